"""Per-start policy on a real Hub + Docker: properties, no leaks, wait queue, spawn page."""

from __future__ import annotations

import html
import re
import threading
import time

import pytest
import requests

from latticehub import labels

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MIB = 1024**2
NO_OPTIONS = {"user_options": {}}
LIMITS = """
c.GroupLimitDockerSpawner.group_limits = {
    "lqcd": {"max_servers": 3, "mem_limit": "1G", "cpu_limit": 1.0},
    "nuclear": {"max_servers": 1, "mem_limit": "512M"},
}
c.GroupLimitDockerSpawner.mem_limit = "768M"
c.GroupLimitDockerSpawner.spawn_queue_timeout = {queue}
"""


def memory_of(docker_client, hub, user):
    (container,) = docker_client.containers.list(
        filters={"label": [f"{labels.HUB}={hub.env['LATTICEHUB_HUB_ID']}", f"{labels.USER}={user}"]}
    )
    return container.attrs["HostConfig"]["Memory"]


def test_policy_is_decided_on_every_start(make_hub, docker_client):
    hub = make_hub(LIMITS.replace("{queue}", "0")).start()
    hub.create_users(["ann", "ben", "cat"])
    hub.create_group("lqcd", ["ann", "ben", "cat"])

    # an explicit request
    assert hub.spawn("ann", {"mem_limit": "512M"}).status_code in (201, 202)
    hub.wait_ready("ann")
    assert memory_of(docker_client, hub, "ann") == 512 * MIB
    hub.stop_server("ann")
    # the next start with empty options gets the spawner default, not the old request
    # (an empty body would make the Hub reuse the remembered options, by design)
    assert hub.spawn("ann", NO_OPTIONS).status_code in (201, 202)
    hub.wait_ready("ann")
    assert memory_of(docker_client, hub, "ann") == 768 * MIB
    hub.stop_server("ann")

    # a manager lowers memory and max_servers through the group's properties: the next
    # spawn follows without a Hub restart
    hub.set_properties("lqcd", {"latticehub": {"mem_limit": "256M", "max_servers": 1}})
    assert hub.spawn("ann", NO_OPTIONS).status_code in (201, 202)
    hub.wait_ready("ann")
    assert memory_of(docker_client, hub, "ann") == 256 * MIB
    r = hub.spawn("ben", NO_OPTIONS)
    assert r.status_code == 429, r.text
    assert "limit of 1" in r.json()["message"]
    r = hub.spawn("ben", {"mem_limit": "512M"})
    assert r.status_code == 400 and "256M" in r.json()["message"], r.text

    # a property can never raise a value above the admin's ceiling
    hub.set_properties("lqcd", {"latticehub": {"max_servers": 50, "mem_limit": "64G"}})
    assert hub.spawn("ben", NO_OPTIONS).status_code in (201, 202)
    hub.wait_ready("ben")
    assert memory_of(docker_client, hub, "ben") == 768 * MIB
    r = hub.spawn("cat", {"mem_limit": "2G"})
    assert r.status_code == 400 and "1G" in r.json()["message"], r.text


def read_progress(hub, user, seconds, found):
    """Collect the spawn progress messages of ``user`` for at most ``seconds``."""
    url = f"{hub.api}/users/{user}/server/progress"
    headers = {"Authorization": f"token {hub.token}"}
    deadline = time.monotonic() + seconds
    try:
        with requests.get(url, headers=headers, stream=True, timeout=seconds) as r:
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    found.append(line)
                if time.monotonic() > deadline or (line and '"ready": true' in line):
                    return
    except requests.RequestException:
        return


def test_wait_queue_serves_in_order_and_reports_position(make_hub, docker_client):
    hub = make_hub(LIMITS.replace("{queue}", "90")).start()
    hub.create_users(["erin", "fay"])
    hub.create_group("nuclear", ["erin", "fay"])
    assert hub.spawn("erin").status_code in (201, 202)
    hub.wait_ready("erin")

    # fay waits instead of being refused
    r = hub.spawn("fay")
    assert r.status_code == 202, r.text
    events: list[str] = []
    reader = threading.Thread(target=read_progress, args=(hub, "fay", 60, events))
    reader.start()
    time.sleep(3)
    server = hub.server("fay")
    assert server is not None and server["pending"] == "spawn"
    hub.stop_server("erin")
    hub.wait_ready("fay")
    reader.join(70)
    joined = "\n".join(events)
    assert "position 1 of 1" in joined, joined
    assert "Reserved a slot of group nuclear" in joined, joined


def test_queue_times_out_with_a_clear_message(make_hub):
    hub = make_hub(LIMITS.replace("{queue}", "2")).start()
    hub.create_users(["erin", "fay"])
    hub.create_group("nuclear", ["erin", "fay"])
    assert hub.spawn("erin").status_code in (201, 202)
    hub.wait_ready("erin")
    r = hub.spawn("fay")
    assert r.status_code == 429, r.text
    assert "Waited 2s in the queue" in r.json()["message"]


def login(hub, user) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/login", timeout=30)
    xsrf = session.cookies.get("_xsrf") or re.search(r'name="_xsrf" value="([^"]+)"', page.text)[1]
    r = session.post(
        f"{hub.url}/hub/login?next=",
        data={"username": user, "password": "any", "_xsrf": xsrf},
        timeout=30,
    )
    r.raise_for_status()
    session.headers["X-XSRFToken"] = xsrf
    return session


def test_spawn_page_offers_own_groups_and_shows_refusal(make_hub):
    hub = make_hub(LIMITS.replace("{queue}", "0")).start()
    hub.create_users(["ann", "erin", "<b>x"])
    hub.create_group("lqcd", ["ann"])
    hub.create_group("nuclear", ["ann", "erin"])
    session = login(hub, "ann")
    page = session.get(f"{hub.url}/hub/spawn", timeout=30).text
    options = re.findall(r'<option value="([^"]+)"', page)
    assert "lqcd" in options and "nuclear" in options
    assert "0/3 servers" in page and "0/1 servers" in page

    # fill nuclear, then erin's spawn through the form shows the refusal on the page
    assert hub.spawn("ann", {"group": "nuclear"}).status_code in (201, 202)
    hub.wait_ready("ann")
    erin = login(hub, "erin")
    form = erin.get(f"{hub.url}/hub/spawn", timeout=30).text
    xsrf = re.search(r'xsrf_token: "([^"]+)"', form)[1]
    r = erin.post(f"{hub.url}/hub/spawn", data={"group": "nuclear", "_xsrf": xsrf}, timeout=60)
    text = html.unescape(r.text)
    assert "Group 'nuclear' has reached its limit of 1 server(s)" in text, r.text[-2000:]
    assert "ann/" in text
