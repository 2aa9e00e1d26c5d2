"""Real JupyterHub + real Docker: idle servers of a group are culled after that group's timeout.

Three groups, one server each, all idle from the start:

- ``fast``: ``idle_timeout=15`` -> culled after about 15 s;
- ``full``: ``idle_timeout=3600`` but ``idle_timeout_busy=15`` and ``max_servers=1``, so one
  server makes the group busy -> culled after about 15 s too;
- ``slow``: ``idle_timeout=3600`` -> keeps running.
"""

from __future__ import annotations

import time

import pytest

from latticehub import labels

pytestmark = [pytest.mark.docker, pytest.mark.slow]

TIMEOUT = 15
CONFIG = f"""
c.GroupLimitDockerSpawner.group_limits = {{
    "fast": {{"max_servers": 2, "mem_limit": "512M", "cpu_limit": 0.25,
              "idle_timeout": {TIMEOUT}}},
    "slow": {{"max_servers": 2, "mem_limit": "512M", "cpu_limit": 0.25,
              "idle_timeout": 3600, "max_age": 7200}},
    "full": {{"max_servers": 1, "mem_limit": "512M", "cpu_limit": 0.25,
              "idle_timeout": 3600, "idle_timeout_busy": {TIMEOUT}}},
}}
c.GroupLimitDockerSpawner.unlisted_group_limits = None
c.GroupLimitDockerSpawner.mem_limit = "512M"
# group_limits changed after jupyterhub_config.py: declare the culler again, rounds every 3 s
from hub_ext.culling.hubconfig import install as install_culling
assert install_culling(c, interval=3)
"""
USERS = {"ann": "fast", "ben": "slow", "cat": "full"}


def running_containers(docker_client, hub, user) -> list:
    selector = [f"{labels.HUB}={hub.env['LATTICEHUB_HUB_ID']}", f"{labels.USER}={user}"]
    return docker_client.containers.list(filters={"label": selector})  # running only


def test_idle_servers_are_culled_after_their_groups_timeout(make_hub, docker_client):
    hub = make_hub(CONFIG).start()
    hub.create_users(list(USERS))
    for user, group in USERS.items():
        hub.create_group(group, [user])
    spawned = {}
    for user in USERS:
        spawned[user] = time.monotonic()
        r = hub.spawn(user)
        assert r.status_code in (201, 202), r.text
    # ben's server stays; ann's and cat's may be culled before this test sees them ready (a
    # spawn request takes up to 10 s to answer): the culler's log below says they were
    hub.wait_ready("ben")
    assert len(running_containers(docker_client, hub, "ben")) == 1

    culled: dict[str, float] = {}
    deadline = time.monotonic() + 90
    while set(culled) != {"ann", "cat"} and time.monotonic() < deadline:
        for user in ("ann", "cat"):
            if user not in culled and hub.server(user) is None:
                culled[user] = time.monotonic() - spawned[user]
        time.sleep(1)
    assert set(culled) == {"ann", "cat"}, f"not culled within 90 s: {USERS.keys() - culled}"
    # never before the group's timeout (idle counts from the server's start at the earliest)
    assert all(elapsed >= TIMEOUT for elapsed in culled.values()), culled

    # the culled servers' containers are stopped; the slow group's server still runs
    for user in ("ann", "cat"):
        assert running_containers(docker_client, hub, user) == []
    ben = hub.server("ben")
    assert ben is not None and ben["ready"], ben
    assert len(running_containers(docker_client, hub, "ben")) == 1

    log = hub.tail(2000)
    assert "culling ann/ of group 'fast': idle" in log
    assert f">= idle_timeout {TIMEOUT}s" in log
    assert "culling cat/ of group 'full': idle" in log
    assert f"idle_timeout_busy (group busy: 1/1 servers) {TIMEOUT}s" in log
    assert "culling ben/" not in log
