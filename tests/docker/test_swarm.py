"""GroupLimitSwarmSpawner on a single-node Swarm made by the test run."""

from __future__ import annotations

import pytest

from latticehub import labels

pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.slow]


def test_swarm_placement_and_limits(make_hub, docker_client, swarm_node):
    config = f"""
c.GroupLimitSwarmSpawner.group_limits = {{
    "lqcd": {{"max_servers": 1, "mem_limit": "512M", "cpu_limit": 0.5,
              "nodes": [{swarm_node!r}], "constraints": ["node.role==manager"]}},
}}
c.GroupLimitSwarmSpawner.mem_limit = "1G"
"""
    hub = make_hub(config, spawner="swarm").start()
    hub_id = hub.env["LATTICEHUB_HUB_ID"]
    hub.create_users(["ann", "ben"])
    hub.create_group("lqcd", ["ann", "ben"])
    r = hub.spawn("ann")
    assert r.status_code in (201, 202), r.text
    hub.wait_ready("ann", timeout=240)

    (service,) = docker_client.services.list(filters={"label": f"{labels.HUB}={hub_id}"})
    spec = service.attrs["Spec"]
    task = spec["TaskTemplate"]
    assert f"node.hostname=={swarm_node}" in task["Placement"]["Constraints"]
    assert "node.role==manager" in task["Placement"]["Constraints"]
    assert task["Resources"]["Limits"]["MemoryBytes"] == 512 * 1024**2
    assert task["Resources"]["Limits"]["NanoCPUs"] == 500_000_000
    assert task["Resources"]["Reservations"]["MemoryBytes"] == 512 * 1024**2
    assert task["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    assert spec["Labels"][labels.GROUP] == "lqcd"
    assert spec["Labels"][labels.NODE] == swarm_node

    r = hub.spawn("ben")
    assert r.status_code == 429, r.text
    assert "ann/" in r.json()["message"]

    # the ledger is rebuilt from service labels after a Hub restart
    hub.kill()
    hub.start()
    r = hub.spawn("ben")
    assert r.status_code == 429, r.text

    hub.stop_server("ann")
    assert not docker_client.services.list(filters={"label": f"{labels.HUB}={hub_id}"})
