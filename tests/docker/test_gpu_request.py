"""GPU device requests reach the real engine's container config (created, not started:
this machine has no GPU runtime)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from jupyterhub.objects import Hub

from latticehub import labels
from spawner import GroupLimitDockerSpawner
from tests.docker.conftest import IMAGE, remove_hub_objects
from tests.fakes import Group, hub_user

pytestmark = [pytest.mark.docker]


def test_assigned_gpu_ids_are_in_the_created_container(docker_client, monkeypatch):
    monkeypatch.setattr(GroupLimitDockerSpawner, "_ledgers", {})
    hub_id = f"g{secrets.token_hex(4)}"
    spawners = []
    for name in ("gpa", "gpb"):
        user = hub_user(name, [Group("lqcd")])
        spawner = GroupLimitDockerSpawner(
            user=user,
            hub=Hub(),
            image=IMAGE,
            hub_id=hub_id,
            prefix=f"jupyter-{hub_id}",
            home_volume=f"lhtest-{hub_id}-home-{{username}}",
            group_limits={"lqcd": {"gpus": 2, "mem_limit": "512M"}},
            gpu_devices={"local": ["0", "1", "2"]},
        )
        spawner.user_options = {"gpus": "1" if name == "gpa" else "2"}
        spawners.append(spawner)

    async def create_all():
        created = []
        for spawner in spawners:
            pool, limits, request = spawner.resolve(spawner.user_options)
            slot = await spawner.acquire_slot(pool, limits, request)
            created.append(await spawner.create_object_for(slot, request, limits))
        return created

    try:
        created = asyncio.run(create_all())
        requests = {}
        for spawner, obj in zip(spawners, created, strict=True):
            attrs = docker_client.api.inspect_container(obj["Id"])
            (device_request,) = attrs["HostConfig"]["DeviceRequests"]
            assert device_request["Driver"] == "nvidia"
            assert device_request["Capabilities"] == [["gpu"]]
            requests[spawner.user.name] = device_request["DeviceIDs"]
            assert attrs["Config"]["Labels"][labels.GPUS] == ",".join(device_request["DeviceIDs"])
        assert len(requests["gpa"]) == 1 and len(requests["gpb"]) == 2
        assert not set(requests["gpa"]) & set(requests["gpb"]), requests
    finally:
        remove_hub_objects(docker_client, hub_id)
