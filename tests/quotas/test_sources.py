"""The seams: Hub API calls (scripted fetch) and the engine (a fake low-level docker client)."""

from __future__ import annotations

import pytest

from hub_ext.common.hub_client import HubError, HubSource, parse_queue_gauge
from hub_ext.quotas.docker_source import (
    DockerEngineSource,
    EngineUnavailable,
    SwarmEngineSource,
    engine_source,
)
from latticehub import labels as L
from tests.quotas.fakes import FakeHub

API = "http://127.0.0.1:8081/hub/api"


def hub_with(users=(), groups=None, queued=None, **kwargs):
    fake = FakeHub(groups or {}, list(users), queued, **kwargs)
    return fake, HubSource(API, "secret", fetch=fake.fetch)


async def test_active_users_follow_pagination():
    users = [{"name": f"u{i}", "servers": {}} for i in range(450)]
    fake, hub = hub_with(users)
    found = await hub.active_users()
    assert [u["name"] for u in found] == [u["name"] for u in users]
    assert len([c for c in fake.calls if c[1] == "/users"]) == 3


async def test_groups_by_name_skip_missing_ones_and_list_all():
    fake, hub = hub_with(groups={"lqcd": {"users": [], "properties": {"a": 1}}})
    assert [g["name"] for g in await hub.groups(["lqcd", "gone"])] == ["lqcd"]
    assert [g["name"] for g in await hub.groups()] == ["lqcd"]
    assert await hub.group("gone") is None


async def test_set_properties_and_errors():
    fake, hub = hub_with(groups={"a": {"properties": {}}, "b": {"properties": {}}}, writable={"a"})
    model = await hub.set_properties("a", {"latticehub": {"max_servers": 1}})
    assert model["properties"] == {"latticehub": {"max_servers": 1}}
    with pytest.raises(HubError) as info:
        await hub.set_properties("b", {})
    assert info.value.status_code == 403 and "not authorized" in info.value.message


async def test_unreachable_hub_is_a_502():
    async def down(method, url, headers, body):
        raise OSError("connection refused")

    with pytest.raises(HubError) as info:
        await HubSource(API, "t", fetch=down).active_users()
    assert info.value.status_code == 502 and "connection refused" in info.value.message
    assert await HubSource(API, "t", fetch=down).queued() is None


async def test_requests_carry_the_service_token():
    seen = []

    async def record(method, url, headers, body):
        seen.append((method, url, headers.get("Authorization"), body))
        return 200, b"{}"

    await HubSource(API, "secret", fetch=record).set_properties("a b/c", {"x": 1})
    assert seen == [("PUT", f"{API}/groups/a%20b%2Fc/properties", "token secret", b'{"x": 1}')]


async def test_queue_gauge_from_metrics():
    fake, hub = hub_with(queued={"lqcd": 2, "nuclear": 0})
    assert await hub.queued() == {"lqcd": 2, "nuclear": 0}
    assert ("GET", "/hub/metrics") in fake.calls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('latticehub_group_spawns_queued{group="lqcd"} 3.0', {"lqcd": 3}),
        ('latticehub_group_spawns_queued{group="a\\"b"} 1.0', {'a"b': 1}),
        ('latticehub_group_spawns_queued{group="x"} NaN', {}),
        ("# HELP latticehub_group_spawns_queued Spawns waiting\n", {}),
        ('latticehub_group_servers{group="lqcd"} 3.0', {}),
    ],
)
def test_parse_queue_gauge(text, expected):
    assert parse_queue_gauge(text) == expected


class FakeAPI:
    """The low-level docker API calls the sources make."""

    def __init__(self, fail=False):
        self.fail = fail
        self.filters = []

    def containers(self, filters):
        if self.fail:
            raise ConnectionError("engine down")
        self.filters.append(filters)
        return [
            {
                "Id": "abc",
                "Labels": {L.GROUP: "lqcd", L.USER: "ann"},
                "Image": "img:1",
                "Created": 1700000000,
            }
        ]

    def info(self):
        return {"NCPU": 8, "MemTotal": 16 * 1024**3, "Name": "box"}

    def services(self, filters):
        self.filters.append(filters)
        return [
            {
                "ID": "svc1",
                "CreatedAt": "2024-01-01T00:00:00.123456789Z",
                "Spec": {
                    "Labels": {L.GROUP: "lqcd", L.USER: "ann"},
                    "TaskTemplate": {"ContainerSpec": {"Image": "img:1@sha256:00"}},
                },
            }
        ]

    def tasks(self, filters):
        return [{"ServiceID": "svc1", "NodeID": "n1"}]

    def nodes(self):
        return [
            {
                "ID": "n1",
                "Description": {
                    "Hostname": "gpu01",
                    "Resources": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 8 * 1024**3},
                },
            }
        ]


async def test_docker_source_reads_running_containers_of_this_hub():
    api = FakeAPI()
    source = DockerEngineSource("h1", node_name="local", client_factory=lambda: api)
    (obj,) = await source.objects()
    assert api.filters == [{"label": f"{L.HUB}=h1", "status": "running"}]
    assert (obj.id, obj.image, obj.created, obj.labels[L.USER]) == ("abc", "img:1", 1.7e9, "ann")
    (node,) = await source.nodes()
    assert (node.name, node.cpus, node.mem_bytes, node.hostname) == (
        "local",
        8.0,
        16 * 1024**3,
        "box",
    )


async def test_docker_source_failure_is_engine_unavailable_and_reconnects():
    made = []

    def factory():
        made.append(1)
        return FakeAPI(fail=len(made) == 1)

    source = DockerEngineSource("h1", client_factory=factory)
    with pytest.raises(EngineUnavailable, match="engine down"):
        await source.objects()
    assert len(await source.objects()) == 1 and len(made) == 2


async def test_swarm_source_services_with_their_task_nodes():
    source = engine_source("swarm", "h1", client_factory=FakeAPI)
    assert isinstance(source, SwarmEngineSource)
    (obj,) = await source.objects()
    assert (obj.id, obj.image, obj.node) == ("svc1", "img:1", "gpu01")
    assert obj.created == pytest.approx(1704067200.123456)
    (node,) = await source.nodes()
    assert (node.name, node.cpus, node.mem_bytes) == ("gpu01", 4.0, 8 * 1024**3)
