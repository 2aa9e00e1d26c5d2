"""Assignment of GPU device ids on nodes."""

import pytest

from latticehub.gpus import GpuAssignment, GpuUse, NoGpuAvailable, assign_gpus

INV = {"n1": ["0", "1", "2", "3"], "n2": ["0", "1"]}


def ex(node, *ids):
    return GpuUse(node, ids, False)


def sh(node, *ids):
    return GpuUse(node, ids, True)


@pytest.mark.parametrize("count", [0, -1])
def test_no_gpus_requested_returns_none(count):
    assert assign_gpus(inventory=INV, in_use=[ex("n1", "0")], count=count, shared=False) is None
    assert assign_gpus(inventory={}, in_use=[], count=count, shared=True) is None


@pytest.mark.parametrize(
    ("inventory", "in_use", "count", "shared", "nodes", "expected"),
    [
        # packing: the fullest node that still fits
        (INV, [], 1, False, None, ("n2", ("0",))),
        (INV, [], 2, False, None, ("n2", ("0", "1"))),
        (INV, [], 3, False, None, ("n1", ("0", "1", "2"))),
        (INV, [ex("n1", "0", "1")], 1, False, None, ("n1", ("2",))),
        (INV, [ex("n1", "0")], 2, False, None, ("n2", ("0", "1"))),
        (INV, [ex("n2", "0")], 2, False, None, ("n1", ("0", "1"))),
        (INV, [ex("n1", "0", "2")], 2, False, None, ("n1", ("1", "3"))),
        # equally full: the name decides
        ({"b": ["0"], "a": ["0"]}, [], 1, False, None, ("a", ("0",))),
        # nodes filter
        (INV, [], 1, False, ["n1"], ("n1", ("0",))),
        (INV, [], 1, False, ("n1", "n9"), ("n1", ("0",))),
        # exclusive never takes a GPU used by anyone
        (INV, [ex("n2", "0"), sh("n2", "1")], 1, False, None, ("n1", ("0",))),
        (INV, [sh("n1", "0"), sh("n1", "1")], 2, False, None, ("n1", ("2", "3"))),
        ({"n": ["0", "1"]}, [sh("n", "0")], 1, False, None, ("n", ("1",))),
        # sharing: free GPUs first, anywhere
        ({"n": ["0", "1"]}, [sh("n", "0")], 1, True, None, ("n", ("1",))),
        (INV, [sh("n2", "0"), sh("n2", "1")], 1, True, None, ("n1", ("0",))),
        # sharing once free ones are used up: least loaded, never an exclusive one
        (
            {"n": ["0", "1"]},
            [sh("n", "0"), sh("n", "1"), sh("n", "0")],
            1,
            True,
            None,
            ("n", ("1",)),
        ),
        ({"n": ["0", "1"]}, [ex("n", "0"), sh("n", "1")], 1, True, None, ("n", ("1",))),
        ({"n": ["0", "1"]}, [sh("n", "0")], 2, True, None, ("n", ("1", "0"))),
        # less sharing beats packing
        ({"a": ["0", "1"], "b": ["0", "1", "2"]}, [sh("a", "0")], 2, True, None, ("b", ("0", "1"))),
        # uses on nodes outside the inventory do not matter
        ({"n": ["0"]}, [ex("other", "0")], 1, False, None, ("n", ("0",))),
    ],
)
def test_assign_gpus(inventory, in_use, count, shared, nodes, expected):
    got = assign_gpus(inventory=inventory, in_use=in_use, count=count, shared=shared, nodes=nodes)
    assert got == GpuAssignment(*expected)


@pytest.mark.parametrize(
    ("inventory", "in_use", "count", "shared", "nodes", "in_message"),
    [
        ({}, [], 1, False, None, "no node"),
        (INV, [], 5, False, None, "n1, n2"),
        (INV, [], 1, False, ["n9"], "no node"),
        (INV, [ex("n1", "0", "1", "2", "3")], 1, False, ["n1"], "(n1)"),
        ({"n": ["0", "1"]}, [ex("n", "0"), ex("n", "1")], 1, True, None, "(n)"),
        ({"n": ["0", "1"]}, [sh("n", "0")], 2, False, None, "2 free"),
        ({"n": ["0"]}, [sh("n", "0")], 1, False, None, "(n)"),
        ({"n": ["0"]}, [ex("n", "0")], 1, True, None, "(n)"),
        ({"a": ["0"], "b": ["0"]}, [], 2, False, None, "a, b"),
    ],
)
def test_no_gpu_available(inventory, in_use, count, shared, nodes, in_message):
    with pytest.raises(NoGpuAvailable) as info:
        assign_gpus(inventory=inventory, in_use=in_use, count=count, shared=shared, nodes=nodes)
    assert in_message in str(info.value)


def simulate(requests, inventory):
    """Assign GPUs for ``(count, shared)`` requests one after another; return the uses."""
    uses = []
    for count, shared in requests:
        try:
            got = assign_gpus(inventory=inventory, in_use=uses, count=count, shared=shared)
        except NoGpuAvailable:
            continue
        uses.append(GpuUse(got.node, got.ids, shared))
    return uses


@pytest.mark.parametrize(
    "requests",
    [
        [(1, False)] * 10,
        [(1, True), (1, False)] * 5,
        [(2, True), (1, False), (1, True), (3, False), (1, True)] * 3,
        [(1, True)] * 12 + [(1, False)] * 3,
    ],
)
def test_exclusive_gpus_are_never_reused(requests):
    inventory = {"n1": ["0", "1", "2", "3"], "n2": ["0", "1"]}
    uses = simulate(requests, inventory)
    assert uses, "some request must have been served"
    holders = {}
    for use in uses:
        assert len(set(use.ids)) == len(use.ids)
        for gpu in use.ids:
            assert gpu in inventory[use.node]
            holders.setdefault((use.node, gpu), []).append(use.shared)
    for key, shared_flags in holders.items():
        if len(shared_flags) > 1:
            assert all(shared_flags), f"GPU {key} shared with an exclusive user"


def test_sharers_spread_before_stacking():
    inventory = {"n": ["0", "1", "2"]}
    uses = simulate([(1, True)] * 6, inventory)
    load = {}
    for use in uses:
        load[use.ids[0]] = load.get(use.ids[0], 0) + 1
    assert load == {"0": 2, "1": 2, "2": 2}
    assert [u.ids[0] for u in uses[:3]] == ["0", "1", "2"]
