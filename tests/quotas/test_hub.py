"""The quotas service behind a real Hub, with real containers (docker tier).

One Hub for the module (its start is the slow part): a spawn storm for two groups whose
usage must equal ``docker ps`` during and after; a manager lowers ``max_servers`` and the
next spawn is refused by the spawner; what managers, admins and members may do.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from latticehub import labels

pytestmark = [pytest.mark.docker, pytest.mark.slow]

STORM = {"ben": "lqcd", "cat": "lqcd", "mallory": "lqcd", "dan": "nuclear", "erin": "nuclear"}


def docker_ps(hub, group: str) -> list[str]:
    """``docker ps`` of this hub's containers of one group: the users they belong to."""
    out = subprocess.run(
        ["docker", "ps", "--format", f'{{{{.Label "{labels.USER}"}}}}',
         "--filter", f"label={labels.HUB}={hub.env['LATTICEHUB_HUB_ID']}",
         "--filter", f"label={labels.GROUP}={group}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted(line for line in out.splitlines() if line)


class Client:
    """Calls the quotas API (and pages) with a user's Hub token."""

    def __init__(self, hub, user: str):
        self.base = f"{hub.url}/services/quotas/"
        self.headers = {"Authorization": f"token {hub.user_token(user)}"}

    def __call__(self, method: str, path: str, headers=None, **kwargs) -> requests.Response:
        headers = {**self.headers, **(headers or {})}
        return requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)

    def groups(self) -> dict[str, dict]:
        r = self("GET", "api/groups")
        assert r.status_code == 200, r.text
        return {g["name"]: g for g in r.json()["items"]}


@pytest.fixture(scope="module")
def clients(quota_hub):
    deadline = time.monotonic() + 30
    while requests.get(quota_hub.quotas + "/api/groups", timeout=5).status_code != 401:
        assert time.monotonic() < deadline, quota_hub.tail()
        time.sleep(0.3)
    return {user: Client(quota_hub, user) for user in ("boss", "ann", "mallory")}


def test_storm_usage_equals_docker_ps(quota_hub, clients):
    hub, boss = quota_hub, clients["boss"]
    with ThreadPoolExecutor(len(STORM)) as pool:
        responses = dict(zip(STORM, pool.map(hub.spawn, STORM), strict=True))
    accepted = [u for u, r in responses.items() if r.status_code in (201, 202)]
    refused = [u for u, r in responses.items() if r.status_code == 429]
    assert len(accepted) == 3 and len(refused) == 2, {u: r.text for u, r in responses.items()}

    # during: whenever docker ps is the same before and after the API call, they agree
    compared = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        before = {g: docker_ps(hub, g) for g in ("lqcd", "nuclear")}
        usage = boss.groups()
        after = {g: docker_ps(hub, g) for g in ("lqcd", "nuclear")}
        if before == after:
            compared += 1
            for group in ("lqcd", "nuclear"):
                assert usage[group]["usage"]["containers"] == len(after[group]), (usage, after)
                held = usage[group]["usage"]["containers"] + usage[group]["usage"]["pending"]
                assert held == sum(1 for u in accepted if STORM[u] == group)
        if compared and all(hub.server(u) and hub.server(u)["ready"] for u in accepted):
            break
        time.sleep(0.5)
    assert compared > 0

    # after: every number equals docker ps, and the servers are listed with their details
    usage = boss.groups()
    for group, limit in (("lqcd", 2), ("nuclear", 1)):
        ps = docker_ps(hub, group)
        assert len(ps) == limit
        numbers = usage[group]["usage"]
        assert (numbers["used"], numbers["containers"], numbers["pending"], numbers["limit"]) == (
            len(ps), len(ps), 0, limit)  # fmt: skip
        assert numbers["queued"] == 0 and numbers["free"] == 0
        detail = boss("GET", f"api/groups/{group}").json()
        assert sorted(s["user"] for s in detail["servers"]) == ps
        for s in detail["servers"]:
            assert s["state"] == "running" and s["image"] == "latticehub/singleuser:latest"
            assert s["age_s"] >= 0 and s["last_activity"] is not None
            assert s["mem_bytes"] == 512 * 1024**2 and s["cpus"] == 0.25
    (node,) = boss("GET", "api/nodes").json()["items"]
    assert node["name"] == "local" and node["reserved"]["servers"] == 3
    assert node["groups"] == {"lqcd": 2, "nuclear": 1}


def test_manager_lowers_max_servers_and_the_next_spawn_respects_it(quota_hub, clients):
    hub, ann = quota_hub, clients["ann"]
    running = docker_ps(hub, "lqcd")
    assert len(running) == 2, "runs after the storm test"
    r = ann("PATCH", "api/groups/lqcd/limits", json={"max_servers": 1, "mem_limit": "256M"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["effective"]["max_servers"] == 1 and body["usage"]["over"] is True
    # written to the group's properties, merged: the admin's other keys stay
    properties = hub.request("GET", "/groups/lqcd").json()["properties"]
    assert properties == {"owner": "ann-lab",
                          "latticehub": {"max_servers": 1, "mem_limit": "256M"}}  # fmt: skip

    # running servers keep running; after one stops, the group is at its new limit
    hub.stop_server(running[0])
    waiting = next(u for u in ("ben", "cat", "mallory") if u not in running)
    r = hub.spawn(waiting)
    assert r.status_code == 429, r.text
    message = r.json()["message"]
    assert "'lqcd'" in message and "limit of 1" in message and f"{running[1]}/" in message
    lqcd = ann.groups()["lqcd"]["usage"]
    assert (lqcd["used"], lqcd["limit"], lqcd["over"]) == (1, 1, False)

    # null gives the ceiling back
    r = ann("PATCH", "api/groups/lqcd/limits", json={"max_servers": None})
    assert r.status_code == 200 and r.json()["effective"]["max_servers"] == 2


@pytest.mark.parametrize(
    ("user", "method", "path", "body", "status", "words"),
    [
        ("ann", "PATCH", "api/groups/lqcd/limits", {"max_servers": 3}, 400,
         ["max_servers=3", "ceiling of 2"]),
        ("ann", "PATCH", "api/groups/lqcd/limits", {"mem_limit": "1G"}, 400, ["ceiling of 512M"]),
        ("ann", "PATCH", "api/groups/lqcd/limits", {"home": "/tmp"}, 400, ["admin-only"]),
        ("ann", "PATCH", "api/groups/nuclear/limits", {"max_servers": 0}, 403,
         ["not a manager of group 'nuclear'"]),
        ("ann", "GET", "api/groups/nuclear", None, 403, ["not a manager"]),
        ("mallory", "GET", "api/groups", None, 403, ["may not use the quotas service"]),
        ("mallory", "PATCH", "api/groups/lqcd/limits", {"max_servers": 0}, 403, ["may not use"]),
        ("boss", "PATCH", "api/groups/nuclear/limits", {"max_servers": 2}, 400,
         ["ceiling of 1"]),
    ],
)  # fmt: skip
def test_refusals(quota_hub, clients, user, method, path, body, status, words):
    before = quota_hub.request("GET", "/groups/nuclear").json()["properties"]
    r = clients[user](method, path, json=body)
    assert r.status_code == status, r.text
    for word in words:
        assert word in r.json()["message"], r.text
    assert quota_hub.request("GET", "/groups/nuclear").json()["properties"] == before


def test_who_sees_which_groups(quota_hub, clients):
    assert list(clients["boss"].groups()) == ["lqcd", "nuclear"]
    # the experiments service's job table is read (jupyterhub_config.py passes its URL)
    jobs = clients["boss"].groups()["lqcd"]["jobs"]
    assert jobs == {"queued": 0, "running": 0, "per_user": {}}, jobs
    assert list(clients["ann"].groups()) == ["lqcd"]
    page = clients["ann"]("GET", "", headers={"Accept": "text/html"})
    assert page.status_code == 200 and 'data-group="lqcd"' in page.text
    assert 'data-group="nuclear"' not in page.text
    assert clients["mallory"]("GET", "").status_code == 403
    # without credentials, a page goes to the Hub's login; the API answers 401
    r = requests.get(f"{quota_hub.quotas}/", timeout=10, allow_redirects=False)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_the_service_role_covers_the_listed_groups(quota_hub):
    # the service checks its own token's scopes at start and warns about missing ones
    log = quota_hub.log_path.read_text(errors="replace")
    assert "quotas service on http://127.0.0.1" in log
    assert "the service's role may lower every group with a share" in log
    assert "the quotas service's role lacks" not in log


def test_usage_record_brackets_a_scripted_server_run(quota_hub, clients):
    """A server's recorded hours lie between what the test saw of its start and its stop."""
    hub, boss, ann = quota_hub, clients["boss"], clients["ann"]
    for user in docker_ps(hub, "nuclear"):  # free nuclear's one slot (the storm's winner)
        hub.stop_server(user)
    before = {
        r["user"]: r["sessions"]
        for r in boss("GET", "api/usage?by=user&group=nuclear").json()["items"]
    }
    user = next(u for u in ("dan", "erin") if u not in before)  # one the storm refused
    spawn_requested = time.time()
    r = hub.spawn(user)
    assert r.status_code in (201, 202), r.text
    hub.wait_ready(user)
    ready = time.time()
    time.sleep(3)
    # while it runs it counts up to now
    running = boss("GET", "api/usage?by=user&group=nuclear&period=month").json()["items"]
    hours = {row["user"]: row["container_hours"] for row in running}
    assert hours[user] * 3600 >= time.time() - ready - 3.5
    stop_requested = time.time()
    hub.stop_server(user)
    stopped = time.time()

    r = boss("GET", "api/usage?by=user&group=nuclear&format=csv")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text
    rows = [line.split(",") for line in r.text.splitlines()[1:]]
    seconds = 3600 * sum(float(row[4]) for row in rows if row[2] == user)
    sessions = sum(int(row[3]) for row in rows if row[2] == user)
    # the engine's start/die events: after the request, before ready; after the stop
    # request, before the Hub said it was gone (one day row, unless the run spans midnight)
    assert stop_requested - ready <= seconds <= stopped - spawn_requested, rows
    assert sessions in (1, 2) and seconds > 3
    # a manager of lqcd only sees lqcd's hours
    mine = ann("GET", "api/usage").json()["items"]
    assert {row["group"] for row in mine} == {"lqcd"}
    assert ann("GET", "api/usage?group=nuclear").status_code == 403
    # the page shows the same total for the group
    page = boss("GET", "usage?group=nuclear", headers={"Accept": "text/html"})
    assert page.status_code == 200 and 'data-group="nuclear"' in page.text
