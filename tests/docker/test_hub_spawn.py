"""Real JupyterHub + real Docker: spawn, limits in the container, refusals."""

from __future__ import annotations

import pytest

from latticehub import labels

pytestmark = [pytest.mark.docker, pytest.mark.slow]

GIB = 1024**3

LIMITS = """
c.GroupLimitDockerSpawner.group_limits = {
    "lqcd": {"max_servers": 2, "max_servers_per_user": 1, "mem_limit": "1G",
             "cpu_limit": 0.5, "images": ["latticehub/singleuser:latest"]},
    "nuclear": {"max_servers": 1, "mem_limit": "768M", "cpu_limit": 0.25},
}
c.GroupLimitDockerSpawner.mem_limit = "4G"
"""


@pytest.fixture
def hub(make_hub):
    hub = make_hub(LIMITS).start()
    hub.create_users(["ann", "ben", "cat", "outsider"])
    hub.create_group("lqcd", ["ann", "ben"])
    hub.create_group("nuclear", ["ann", "cat"])
    return hub


def container_of(docker_client, hub, user):
    found = docker_client.containers.list(
        filters={"label": [f"{labels.HUB}={hub.env['LATTICEHUB_HUB_ID']}", f"{labels.USER}={user}"]}
    )
    assert len(found) == 1, found
    return found[0]


def test_spawn_applies_group_limits_and_hardening(hub, docker_client):
    r = hub.spawn("ben")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("ben")
    container = container_of(docker_client, hub, "ben")
    host = container.attrs["HostConfig"]
    # the spawner default (4G) is clamped to the group's ceiling (1G)
    assert host["Memory"] == 1 * GIB
    assert host["MemorySwap"] == 1 * GIB
    assert host["CpuQuota"] == 50_000 and host["CpuPeriod"] == 100_000
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert container.attrs["Config"]["User"] not in ("", "0", "root")
    uid = container.exec_run("id -u").output.decode().strip()
    assert uid == "1000"
    mounts = container.attrs["Mounts"]
    assert not any("docker.sock" in (m.get("Source") or "") for m in mounts)
    assert any(m["Destination"] == "/home/jovyan" for m in mounts)
    assert container.labels[labels.GROUP] == "lqcd"
    hub.stop_server("ben")
    assert not docker_client.containers.list(filters={"label": f"{labels.USER}=ben"}), (
        "container left behind after stop"
    )


def test_user_in_two_groups_charges_the_chosen_group(hub, docker_client):
    r = hub.spawn("ann", {"group": "nuclear"})
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("ann")
    container = container_of(docker_client, hub, "ann")
    assert container.labels[labels.GROUP] == "nuclear"
    assert container.attrs["HostConfig"]["Memory"] == 768 * 1024**2
    env = dict(e.split("=", 1) for e in container.attrs["Config"]["Env"])
    assert env["LATTICEHUB_GROUP"] == "nuclear"
    # nuclear (max 1) is now full: cat is refused, naming ann's server
    r = hub.spawn("cat")
    assert r.status_code == 429, r.text
    message = r.json()["message"]
    assert "nuclear" in message and "1 server" in message and "ann/" in message


@pytest.mark.parametrize(
    ("user", "options", "status", "words"),
    [
        ("ben", {"image": "busybox:latest"}, 403, ["busybox:latest", "not allowed", "lqcd"]),
        ("ben", {"mem_limit": "64G"}, 400, ["64G", "1G", "lqcd"]),
        ("ben", {"cpu_limit": "8"}, 400, ["8 CPUs", "0.5"]),
        ("ben", {"group": "nuclear"}, 403, ["not a member", "nuclear"]),
        ("ben", {"group": "no-such-group"}, 403, ["no-such-group"]),
        ("outsider", {}, 403, ["no group"]),
        ("ben", {"mem_limit": "lots"}, 400, ["mem_limit", "8G"]),
    ],
)
def test_bad_requests_get_clear_4xx(hub, user, options, status, words):
    r = hub.spawn(user, options)
    assert r.status_code == status, r.text
    message = r.json()["message"]
    for word in words:
        assert word in message, message
    assert hub.server(user) is None
