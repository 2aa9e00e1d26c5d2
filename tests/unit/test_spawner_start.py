"""The spawner's start/stop/poll against a scripted Docker client (fast tier).

The real engine is exercised in tests/docker; here the seam is ``spawner.docker``.
"""

from __future__ import annotations

import asyncio
import re

import docker
import pytest
import requests
from jupyterhub.objects import Hub
from jupyterhub.spawner import SpawnException
from traitlets import TraitError

from latticehub import labels
from latticehub.slots import RUNNING, Slot
from spawner import GroupLimitDockerSpawner
from tests.fakes import Group, hub_user

GIB = 1024**3


def not_found():
    response = requests.Response()
    response.status_code = 404
    return docker.errors.NotFound("no such object", response=response)


class FakeDocker:
    """Records calls; containers 'exist' once created."""

    def __init__(self, delay=0.0, running=()):
        self.calls = []
        self.created = {}
        self.running = list(running)
        self.removed = set()
        self.delay = delay

    async def __call__(self, method, *args, **kwargs):
        self.calls.append((method, args, kwargs))
        await asyncio.sleep(self.delay)
        if method == "inspect_container":
            name = args[0]
            for cid, kw in self.created.items():
                if name in (cid, kw["name"]) and cid not in self.removed:
                    return {"Id": cid, "State": {"Running": True}}
            for found in self.running:
                if name in (found["Id"], f"jupyter-{found['Labels'][labels.USER]}"):
                    return {"Id": found["Id"], "State": {"Running": True}}
            raise not_found()
        if method == "create_container":
            cid = f"c{len(self.created):04d}"
            self.created[cid] = kwargs
            return {"Id": cid}
        if method == "port":
            return [{"HostIp": "127.0.0.1", "HostPort": "32001"}]
        if method == "containers":
            created = [
                {"Id": cid, "Labels": kw["labels"], "Created": 1}
                for cid, kw in self.created.items()
                if cid not in self.removed
            ]
            return self.running + created
        if method in ("remove_container", "stop"):
            self.removed.add(args[0])
        if method == "inspect_image":
            return {"Config": {"Cmd": ["jupyterhub-singleuser"]}}
        return None

    def create_kwargs(self):
        return [kw for m, _, kw in self.calls if m == "create_container"]


@pytest.fixture(autouse=True)
def offline_client(monkeypatch):
    # a client that never connects (no version negotiation) and a fresh ledger per test
    monkeypatch.setattr(GroupLimitDockerSpawner, "_client", docker.APIClient(version="1.41"))
    monkeypatch.setattr(GroupLimitDockerSpawner, "_ledgers", {})


def make_spawner(fake, name="ann", groups=("lqcd",), properties=None, options=None, **config):
    user = hub_user(name, [Group(g, (properties or {}).get(g)) for g in groups])
    config.setdefault(
        "group_limits",
        {"lqcd": {"max_servers": 2, "mem_limit": "1G", "cpu_limit": 1.5}, "other": {}},
    )
    spawner = GroupLimitDockerSpawner(
        user=user,
        hub=Hub(),
        image="img:1",
        pull_policy="never",
        cmd=["jupyterhub-singleuser"],
        **config,
    )
    spawner.docker = fake
    spawner.user_options = options or {}
    return spawner


async def test_start_creates_container_with_clamped_limits_labels_and_hardening():
    fake = FakeDocker()
    spawner = make_spawner(
        fake,
        mem_limit="8G",
        extra_host_config={"privileged": True, "mem_limit": "100G", "cap_add": ["SYS_ADMIN"]},
        extra_create_kwargs={"labels": {"site": "x", labels.GROUP: "forged"}},
    )
    assert await spawner.start() == ("127.0.0.1", 32001)
    (kwargs,) = fake.create_kwargs()
    host = kwargs["host_config"]
    assert host["Memory"] == 1 * GIB  # 8G default clamped to the 1G ceiling
    assert host["MemorySwap"] == 1 * GIB
    assert host["CpuQuota"] == 150_000 and host["CpuPeriod"] == 100_000
    assert not host.get("Privileged") and host["CapDrop"] == ["ALL"]
    assert "CapAdd" not in host
    assert "no-new-privileges" in host["SecurityOpt"]
    assert kwargs["labels"][labels.GROUP] == "lqcd" and kwargs["labels"]["site"] == "x"
    assert kwargs["environment"]["LATTICEHUB_GROUP"] == "lqcd"
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/home/jovyan"]["Source"] == "latticehub-home-ann"
    slot = spawner.ledger.get("ann", "")
    assert slot.state == RUNNING and slot.object_id == "c0000"
    messages = [e["message"] for e in spawner._events]
    assert messages[0] == "Checking the group's limits"
    assert any("Creating container" in m for m in messages)
    await spawner.stop()
    assert spawner.ledger.get("ann", "") is None


async def test_per_start_values_do_not_leak_between_starts():
    fake = FakeDocker()
    spawner = make_spawner(
        fake,
        options={"mem_limit": "512M", "group": "other", "image": "img:2"},
        allowed_images=["img:1", "img:2"],
        groups=("lqcd", "other"),
        # a group without images runs the default image only: "other" lists img:2
        group_limits={
            "lqcd": {"max_servers": 2, "mem_limit": "1G", "cpu_limit": 1.5},
            "other": {"images": ["img:1", "img:2"]},
        },
    )
    await spawner.start()
    await spawner.stop()
    spawner.user_options = {}
    await spawner.start()
    first, second = fake.create_kwargs()
    assert first["host_config"]["Memory"] == 512 * 1024**2
    assert first["labels"][labels.GROUP] == "other" and first["image"] == "img:2"
    assert "Memory" not in second["host_config"] or second["host_config"]["Memory"] in (0, GIB)
    assert second["labels"][labels.GROUP] == "lqcd" and second["image"] == "img:1"


async def test_properties_lower_and_apply_on_the_next_start_only():
    fake = FakeDocker()
    props = {"lqcd": {"latticehub": {"mem_limit": "256M"}}}
    spawner = make_spawner(fake, properties=props)
    await spawner.start()
    assert fake.create_kwargs()[0]["host_config"]["Memory"] == 256 * 1024**2


async def test_concurrent_starts_get_exactly_the_limit():
    fake = FakeDocker(delay=0.01)
    spawners = [make_spawner(fake, name=f"u{i}") for i in range(12)]
    results = await asyncio.gather(*(s.start() for s in spawners), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SpawnException)]
    assert len(ok) == 2 and len(refused) == 10
    assert all(r.status_code == 429 and "limit of 2" in r.message for r in refused)
    assert len(fake.create_kwargs()) == 2


async def test_failed_create_releases_the_slot():
    fake = FakeDocker()

    async def broken(method, *args, **kwargs):
        if method == "create_container":
            raise RuntimeError("engine said no")
        return await FakeDocker.__call__(fake, method, *args, **kwargs)

    spawner = make_spawner(fake)
    spawner.docker = broken
    with pytest.raises(RuntimeError):
        await spawner.start()
    assert spawner.ledger.slots("lqcd") == []


async def test_gpus_get_distinct_device_ids_and_run_out():
    fake = FakeDocker()
    config = {
        "group_limits": {"lqcd": {"gpus": 1}},
        "gpu_devices": {"local": ["0", "1"]},
    }
    spawners = [make_spawner(fake, name=f"g{i}", options={"gpus": "1"}, **config) for i in range(3)]
    await spawners[0].start()
    await spawners[1].start()
    with pytest.raises(SpawnException) as refused:
        await spawners[2].start()
    assert refused.value.status_code == 429 and "GPU" in refused.value.message
    ids = [kw["host_config"]["DeviceRequests"][0]["DeviceIDs"] for kw in fake.create_kwargs()]
    assert sorted(ids) == [["0"], ["1"]]
    assert {kw["labels"][labels.GPUS] for kw in fake.create_kwargs()} == {"0", "1"}
    await spawners[0].stop()
    await spawners[2].start()
    assert fake.create_kwargs()[-1]["host_config"]["DeviceRequests"][0]["DeviceIDs"] == ["0"]


async def test_ledger_is_rebuilt_from_labels_before_the_first_start():
    held = [
        Slot(pool="lqcd", user=u, server="", object_id=f"x{u}", state=RUNNING, gpus=())
        for u in ("old1", "old2")
    ]
    running = [
        {"Id": s.object_id, "Labels": labels.render_labels("latticehub", s), "Created": 1}
        for s in held
    ]
    fake = FakeDocker(running=running)
    spawner = make_spawner(fake)
    with pytest.raises(SpawnException) as refused:
        await spawner.start()
    assert "old1/" in refused.value.message and "old2/" in refused.value.message
    filters = [kw["filters"] for m, _, kw in fake.calls if m == "containers"]
    assert filters[0]["label"] == f"{labels.HUB}=latticehub"
    assert [s.claimed for s in spawner.ledger.slots("lqcd")] == [False, False]
    # a container that stopped running frees its slot at the next attempt
    fake.running = running[:1]
    await spawner.start()
    assert {s.user for s in spawner.ledger.slots("lqcd")} == {"old1", "ann"}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"volumes": {"/var/run/docker.sock": "/var/run/docker.sock"}}, "Docker socket"),
        ({"home_volume": "/var/run/docker.sock"}, "Docker socket"),
    ],
)
async def test_docker_socket_is_never_mounted(config, fragment):
    fake = FakeDocker()
    spawner = make_spawner(fake, **config)
    with pytest.raises(Exception) as err:
        await spawner.start()
    assert fragment in str(err.value)
    assert fake.create_kwargs() == []
    assert spawner.ledger.slots() == []


def test_bad_group_limits_config_says_how_to_fix():
    with pytest.raises(Exception) as err:
        make_spawner(FakeDocker(), group_limits={"lqcd": {"max_server": 3}})
    assert "max_servers" in str(err.value) and "unknown key" in str(err.value)
    with pytest.raises(Exception) as err:
        make_spawner(FakeDocker(), spawn_queue_timeout=-1)
    assert "spawn_queue_timeout" in str(err.value)


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        ({"lqcd": {"cpu_limit": 0.001}}, ["group_limits['lqcd']: cpu_limit=0.001", "0.01"]),
        ({"lqcd": {"mem_limit": "16M"}}, ["group_limits['lqcd']: mem_limit='16M'", "64M"]),
        ({"lqcd": {"mem_limit": 0}}, ["mem_limit=0", "leave the key out"]),
    ],
)
def test_group_limits_below_the_floor_are_a_config_error(limits, words):
    with pytest.raises(TraitError) as err:
        make_spawner(FakeDocker(), group_limits=limits)
    for word in words + ["below the floor", "docs/limits.md", "e.g."]:
        assert word in str(err.value)
    for trait in ("unlisted_group_limits", "no_group_limits"):
        with pytest.raises(TraitError, match="below the floor"):
            make_spawner(FakeDocker(), **{trait: limits["lqcd"]})


async def refused(spawner: GroupLimitDockerSpawner, fake: FakeDocker) -> SpawnException:
    """Start ``spawner``; return the refusal after checking that nothing was created."""
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert fake.create_kwargs() == []
    assert spawner.ledger.slots() == []
    return info.value


@pytest.mark.parametrize(
    ("options", "status", "words"),
    [
        ({"cpu_limit": 0.001}, 400, ["CPUs 0.001", "floor of 0.01 CPU"]),
        ({"cpu_limit": "1m"}, 400, ["'1m'", "at least 0.01"]),
        ({"mem_limit": "32M"}, 400, ["'32M'", "floor of 64M"]),
        ({"mem_limit": "0"}, 400, ["'0'", "at least 64M"]),
        ({"image": "busybox:latest"}, 403, ["'busybox:latest'", "Allowed: img:1."]),
    ],
)
async def test_spawn_options_below_the_floor_or_unlisted_image_are_refused(options, status, words):
    fake = FakeDocker()
    # lqcd has no images list and the spawner allows any image: the default one only
    spawner = make_spawner(fake, options=options, allowed_images="*")
    error = await refused(spawner, fake)
    assert error.status_code == status
    for word in words:
        assert word in error.message


async def test_property_below_the_floor_is_ignored_and_the_ceiling_applies(caplog):
    fake = FakeDocker()
    props = {"lqcd": {"latticehub": {"mem_limit": 0, "cpu_limit": "1m"}}}
    spawner = make_spawner(fake, properties=props, mem_limit="8G", cpu_limit=4.0)
    await spawner.start()
    host = fake.create_kwargs()[0]["host_config"]
    assert host["Memory"] == 1 * GIB  # the ceiling, never 0 (Docker's "unlimited")
    assert host["CpuQuota"] == 150_000
    logged = caplog.text
    assert "mem_limit=0 is below the floor of 64M" in logged
    assert "cpu_limit='1m' is below the floor of 0.01 CPU" in logged


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"mem_limit": "16M"}, ["default mem_limit=16M", "at least 64M"]),
        ({"cpu_limit": 0.005}, ["default cpu_limit=0.005", "at least 0.01"]),
    ],
)
async def test_spawner_default_below_the_floor_is_refused_naming_the_trait(config, words):
    fake = FakeDocker()
    error = await refused(make_spawner(fake, **config), fake)
    assert error.status_code == 500
    for word in words:
        assert word in error.message


ALIASES = {"stable": "img:1", "sneaky": "evil:1", "img:1-debug": "evil:1"}


@pytest.mark.parametrize("allowed", [ALIASES, lambda spawner: ALIASES])
async def test_image_alias_resolves_to_its_image_before_the_check(allowed):
    fake = FakeDocker()
    limits = {"lqcd": {"images": ["img:1"]}}
    spawner = make_spawner(
        fake, options={"image": "stable"}, allowed_images=allowed, group_limits=limits
    )
    await spawner.start()
    (kwargs,) = fake.create_kwargs()
    assert kwargs["image"] == "img:1"
    assert kwargs["environment"]["JUPYTER_IMAGE_SPEC"] == "img:1"


@pytest.mark.parametrize(
    ("group_limits", "image"),
    [
        ({"lqcd": {"images": ["img:1"]}}, "sneaky"),
        ({"lqcd": {"images": ["img:1"]}}, "img:1-debug"),
        ({"lqcd": {"images": ["img:1"]}}, "evil:1"),
        ({"lqcd": {}}, "sneaky"),
    ],
)
async def test_alias_of_an_unlisted_image_is_refused(group_limits, image):
    fake = FakeDocker()
    spawner = make_spawner(
        fake, options={"image": image}, allowed_images=ALIASES, group_limits=group_limits
    )
    error = await refused(spawner, fake)
    assert error.status_code == 403
    assert f"Image {image!r}" in error.message and "Allowed: img:1, stable." in error.message
    if image != "evil:1":
        assert "(an alias of 'evil:1')" in error.message


async def test_manager_cannot_name_images_for_a_group_without_images():
    fake = FakeDocker()
    props = {"lqcd": {"latticehub": {"images": ["evil:1"]}}}
    spawner = make_spawner(fake, properties=props, options={"image": "evil:1"}, allowed_images="*")
    error = await refused(spawner, fake)
    # the manager's list is intersected with the default image: nothing is left
    assert error.status_code == 403 and "Allowed: none." in error.message


async def test_manager_can_narrow_the_default_image_away():
    fake = FakeDocker()
    props = {"lqcd": {"latticehub": {"images": []}}}
    error = await refused(make_spawner(fake, properties=props, group_limits={"lqcd": {}}), fake)
    assert error.status_code == 403 and "Allowed: none." in error.message


async def test_manager_listing_the_default_image_keeps_it_for_a_group_without_images():
    fake = FakeDocker()
    props = {"lqcd": {"latticehub": {"images": ["img:1", "evil:1"]}}}
    spawner = make_spawner(fake, properties=props, allowed_images="*")
    await spawner.start()
    assert fake.create_kwargs()[0]["image"] == "img:1"
    await spawner.stop()
    other = FakeDocker()
    spawner = make_spawner(other, properties=props, allowed_images="*", options={"image": "evil:1"})
    error = await refused(spawner, other)
    assert error.status_code == 403 and "Allowed: img:1." in error.message


async def test_options_form_offers_only_aliases_of_listed_images_and_the_floors():
    spawner = make_spawner(
        FakeDocker(), allowed_images=ALIASES, group_limits={"lqcd": {"images": ["img:1"]}}
    )
    form = await spawner._render_options_form()
    images = re.findall(r'<option value="([^"]+)"', form)
    assert images == ["lqcd", "img:1", "stable"]
    assert "at least 64M" in form and "at least 0.01" in form


async def test_bad_allowed_images_is_a_config_error():
    fake = FakeDocker()
    spawner = make_spawner(fake, allowed_images=lambda spawner: {"x": ""})
    error = await refused(spawner, fake)
    assert error.status_code == 500 and "allowed_images" in error.message
    assert await spawner._render_options_form() == ""


async def test_options_form_lists_only_own_groups_escaped():
    spawner = make_spawner(
        FakeDocker(),
        groups=("lqcd", "<img src=x>"),
        unlisted_group_limits={"max_servers": 1},
    )
    form = await spawner._render_options_form()
    assert 'value="lqcd"' in form and "&lt;img src=x&gt;" in form
    assert "<img src=x>" not in form
    assert "other" not in form  # configured, but ann is not a member


async def test_group_storage_and_readonly_shared_dir():
    fake = FakeDocker()
    limits = {
        "lqcd": {
            "shared_dir": "/srv/projects/{group}",
            "shared_readonly": True,
            "home": "/gpfs/home/{username}",
        }
    }
    spawner = make_spawner(fake, group_limits=limits)
    await spawner.start()
    mounts = {m["Target"]: m for m in fake.create_kwargs()[0]["host_config"]["Mounts"]}
    assert mounts["/home/jovyan"] == {
        "Target": "/home/jovyan",
        "Source": "/gpfs/home/ann",
        "Type": "bind",
        "ReadOnly": False,
    }
    assert mounts["/srv/group"]["Source"] == "/srv/projects/lqcd"
    assert mounts["/srv/group"]["ReadOnly"] is True


async def test_manager_can_make_shared_dir_readonly_but_not_writable():
    fake = FakeDocker()
    limits = {"lqcd": {"shared_dir": "grp-{group}", "shared_readonly": True}}
    spawner = make_spawner(
        fake, group_limits=limits, properties={"lqcd": {"latticehub": {"shared_readonly": False}}}
    )
    await spawner.start()
    mounts = {m["Target"]: m for m in fake.create_kwargs()[0]["host_config"]["Mounts"]}
    assert mounts["/srv/group"] == {
        "Target": "/srv/group",
        "Source": "grp-lqcd",
        "Type": "volume",
        "ReadOnly": True,
    }


@pytest.mark.parametrize(
    ("user", "expected"),
    [("nobody", "65534:65534"), ("root", None), ("no-such-user-xyz", None)],
)
async def test_run_as_user_uses_host_uid_and_never_root(user, expected):
    fake = FakeDocker()
    spawner = make_spawner(fake, name=user, group_limits={"lqcd": {"run_as_user": True}})
    if expected is None:
        with pytest.raises(SpawnException) as refused:
            await spawner.start()
        assert refused.value.status_code == 403 and user in refused.value.message
        assert spawner.ledger.slots() == []
    else:
        await spawner.start()
        assert fake.create_kwargs()[0]["user"] == expected


async def test_unclaimed_containers_are_reported_as_orphans():
    from prometheus_client import REGISTRY

    orphan = Slot(pool="lqcd", user="ghost", server="", object_id="xg", state=RUNNING)
    owned = Slot(pool="lqcd", user="ann", server="", object_id="xa", state=RUNNING)
    running = [
        {"Id": s.object_id, "Labels": labels.render_labels("latticehub", s), "Created": 1}
        for s in (orphan, owned)
    ]
    fake = FakeDocker(running=running)
    spawner = make_spawner(fake, orphan_report_delay=0.05)
    spawner.load_state({"object_id": "xa"})  # the Hub knows ann's server
    assert await spawner.poll() is None
    await asyncio.sleep(0.3)
    assert [s.user for s in spawner.ledger.orphans()] == ["ghost"]
    assert REGISTRY.get_sample_value("latticehub_orphaned_servers") == 1.0
    # the orphan's container is removed: the next reconcile frees its slot, and the gauge follows
    fake.running = [c for c in fake.running if c["Id"] != "xg"]
    await spawner.reconcile()
    assert spawner.ledger.orphans() == []
    assert REGISTRY.get_sample_value("latticehub_orphaned_servers") == 0.0


def test_optional_limits_default_to_none_so_unlisted_groups_and_groupless_users_are_refused():
    # a Dict trait given None positionally defaults to {}: that would be "no limits at all"
    from spawner import GroupLimitDockerSpawner

    spawner = GroupLimitDockerSpawner()
    assert spawner.unlisted_group_limits is None
    assert spawner.no_group_limits is None
