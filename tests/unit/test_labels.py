"""Container labels: render and rebuild slots."""

import pytest

from latticehub import labels as L
from latticehub.slots import RUNNING, Slot


@pytest.mark.parametrize(
    "slot",
    [
        Slot(pool="lqcd", user="ann", server="", token="t"),
        Slot(
            pool="lab",
            user="bob",
            server="big run",
            node="gpu01",
            gpus=("0", "3"),
            gpu_shared=True,
            mem_limit=8 * 1024**3,
            cpu_limit=1.5,
            token="t",
        ),
        Slot(
            pool="ml",
            user="cid",
            server="x",
            node="n2",
            gpus=("GPU-abc-123",),
            gpu_shared=False,
            mem_limit=512 * 1024**2,
            cpu_limit=0.25,
        ),
        Slot(pool="ml", user="dan", server="s", mem_limit=1, cpu_limit=16.0),
        Slot(pool="g", user="u", server="s", mem_limit=0, cpu_limit=None),
    ],
)
def test_round_trip(slot):
    labels = L.render_labels("hub-1", slot)
    assert labels[L.HUB] == "hub-1"
    assert all(isinstance(v, str) for v in labels.values())
    back = L.slot_from_labels(labels, "obj-9", since=12.5)
    assert back is not None
    for attr in ("pool", "user", "server", "node", "gpus", "gpu_shared", "mem_limit", "cpu_limit"):
        assert getattr(back, attr) == getattr(slot, attr), attr
    assert (back.state, back.object_id, back.since, back.claimed) == (RUNNING, "obj-9", 12.5, False)


def test_rendered_values():
    slot = Slot(
        pool="p",
        user="u",
        server="s",
        node="n",
        gpus=("1", "2"),
        gpu_shared=True,
        mem_limit=2048,
        cpu_limit=2.0,
    )
    assert L.render_labels("h", slot) == {
        "org.latticehub.hub": "h",
        "org.latticehub.group": "p",
        "org.latticehub.user": "u",
        "org.latticehub.server": "s",
        "org.latticehub.node": "n",
        "org.latticehub.gpus": "1,2",
        "org.latticehub.gpu-shared": "1",
        "org.latticehub.mem-bytes": "2048",
        "org.latticehub.cpus": "2",
    }
    bare = L.render_labels("h", Slot(pool="p", user="u", server=""))
    assert L.MEM not in bare and L.CPU not in bare
    assert (bare[L.GPUS], bare[L.GPU_SHARED], bare[L.SERVER]) == ("", "0", "")


GOOD = {L.GROUP: "lab", L.USER: "ann"}


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {L.USER: "ann"},
        {L.GROUP: "lab"},
        {L.GROUP: "", L.USER: "ann"},
        {L.GROUP: "lab", L.USER: ""},
        {"com.example.group": "lab", "com.example.user": "ann"},
    ],
)
def test_not_ours_gives_none(labels):
    assert L.slot_from_labels(labels, "id") is None


def test_minimal_labels_give_defaults():
    slot = L.slot_from_labels(GOOD, "id")
    assert (slot.pool, slot.user, slot.server, slot.node, slot.gpus) == ("lab", "ann", "", "", ())
    assert (slot.mem_limit, slot.cpu_limit, slot.gpu_shared) == (None, None, False)


@pytest.mark.parametrize(
    ("extra", "mem", "cpu"),
    [
        ({L.MEM: "lots"}, None, None),
        ({L.MEM: "1.5G", L.CPU: "2"}, None, None),
        ({L.CPU: "two"}, None, None),
        ({L.MEM: "", L.CPU: ""}, None, None),
        ({L.MEM: "2048", L.CPU: "0.5"}, 2048, 0.5),
    ],
)
def test_malformed_numbers_become_none(extra, mem, cpu):
    slot = L.slot_from_labels({**GOOD, **extra}, "id")
    assert slot is not None and slot.pool == "lab"
    assert (slot.mem_limit, slot.cpu_limit) == (mem, cpu)


@pytest.mark.parametrize(
    ("gpus", "shared", "expected_gpus", "expected_shared"),
    [("", "1", (), True), (",0,,1,", "0", ("0", "1"), False), ("2", "yes", ("2",), False)],
)
def test_gpu_labels(gpus, shared, expected_gpus, expected_shared):
    slot = L.slot_from_labels({**GOOD, L.GPUS: gpus, L.GPU_SHARED: shared}, "id")
    assert (slot.gpus, slot.gpu_shared) == (expected_gpus, expected_shared)
