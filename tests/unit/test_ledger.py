"""The slot ledger: reservations, concurrency, adoption, reconciliation, wait queue."""

import asyncio
import time

import pytest

from latticehub.limits import GroupLimits, LimitError, ServerRequest
from latticehub.slots import PENDING, RUNNING, Slot
from spawner.ledger import SlotLedger

REQ = ServerRequest(image="img", mem_limit=1024, cpu_limit=0.5)
GPU1 = ServerRequest(image="img", mem_limit=None, cpu_limit=None, gpus=1)
NO_LIMITS = GroupLimits()


def take(ledger, user, server="", pool="lab", limits=NO_LIMITS, **kwargs):
    kwargs.setdefault("request", REQ)
    return ledger.reserve(pool=pool, user=user, server=server, limits=limits, **kwargs)


def refused(ledger, user, server="", **kwargs):
    with pytest.raises(LimitError) as info:
        take(ledger, user, server, **kwargs)
    assert info.value.status_code == 429
    return info.value


def test_reserve_records_a_pending_slot():
    ledger = SlotLedger()
    slot = take(ledger, "ann", "x", pool="lqcd")
    assert (slot.pool, slot.user, slot.server, slot.state) == ("lqcd", "ann", "x", PENDING)
    assert (slot.mem_limit, slot.cpu_limit, slot.image, slot.gpus) == (1024, 0.5, "img", ())
    assert slot.claimed and slot.token
    assert ledger.get("ann", "x") == slot
    assert ledger.slots("lqcd") == [slot] and ledger.slots("other") == []
    assert ledger.pools() == {"lqcd"}


def test_update_and_release():
    ledger = SlotLedger()
    slot = take(ledger, "ann")
    running = ledger.update(slot, state=RUNNING, object_id="c1")
    assert (running.state, running.object_id, running.token) == (RUNNING, "c1", slot.token)
    assert ledger.get("ann", "") == running
    assert ledger.release("ann", "", token="not-it") is None
    assert ledger.get("ann", "") == running
    assert ledger.release("ann", "", token=slot.token) == running
    assert ledger.get("ann", "") is None and ledger.pools() == set()
    assert ledger.update(slot, state=RUNNING) is None
    assert ledger.release("ann", "") is None


def test_old_token_never_frees_a_newer_reservation():
    ledger = SlotLedger()
    limits = GroupLimits(max_servers=1)
    old = take(ledger, "ann", limits=limits)
    new = take(ledger, "ann", limits=limits)  # a restart replaces its own stale slot
    assert new.token != old.token
    assert ledger.slots("lab") == [new]
    assert ledger.release("ann", "", token=old.token) is None
    assert ledger.update(old, state=RUNNING) is None
    assert ledger.get("ann", "") == new
    assert refused(ledger, "bob", limits=limits).reason == "group_full"
    assert ledger.release("ann", "") == new
    take(ledger, "bob", limits=limits)


async def test_max_servers_is_exact_under_concurrency():
    ledger = SlotLedger()
    limits = GroupLimits(max_servers=3)

    async def spawn(i):
        await asyncio.sleep(0)
        return take(ledger, f"user{i}", limits=limits)

    results = await asyncio.gather(*(spawn(i) for i in range(50)), return_exceptions=True)
    won = [r for r in results if isinstance(r, Slot)]
    lost = [r for r in results if not isinstance(r, Slot)]
    assert len(won) == 3 and len(lost) == 47
    assert all(isinstance(e, LimitError) for e in lost)
    assert {(e.status_code, e.reason) for e in lost} == {(429, "group_full")}
    assert len(ledger.slots("lab")) == 3


def test_per_user_limit_and_pools_are_separate():
    ledger = SlotLedger()
    limits = GroupLimits(max_servers=3, max_servers_per_user=1)
    take(ledger, "ann", limits=limits)
    assert refused(ledger, "ann", "lab", limits=limits).reason == "user_full"
    take(ledger, "bob", limits=limits)
    take(ledger, "ann", "lab", pool="other", limits=limits)
    assert refused(ledger, "cid", limits=GroupLimits(max_servers=2)).reason == "group_full"
    assert len(ledger.slots()) == 3


def test_gpu_assignment_through_reserve():
    ledger = SlotLedger()
    inv = {"n1": ["0", "1"], "n2": ["0", "1", "2"]}
    limits = GroupLimits(gpus=1)
    a = take(ledger, "ann", request=GPU1, limits=limits, gpu_inventory=inv, nodes=["n1"])
    b = take(ledger, "bob", request=GPU1, limits=limits, gpu_inventory=inv, nodes=["n1"])
    assert {(a.node, a.gpus), (b.node, b.gpus)} == {("n1", ("0",)), ("n1", ("1",))}
    assert a.gpu_shared is False
    e = refused(ledger, "cid", request=GPU1, limits=limits, gpu_inventory=inv, nodes=["n1"])
    assert e.reason == "gpus_full" and "'lab'" in e.message
    assert ledger.get("cid", "") is None
    # restarting re-assigns without counting its own old GPUs
    again = take(ledger, "ann", request=GPU1, limits=limits, gpu_inventory=inv, nodes=["n1"])
    assert again.gpus == a.gpus
    ledger.release("bob", "")
    c = take(ledger, "cid", request=GPU1, limits=limits, gpu_inventory=inv, nodes=["n1"])
    assert c.gpus == b.gpus
    assert refused(ledger, "dan", request=GPU1, gpu_inventory=None).reason == "gpus_full"


def test_gpu_sharing_through_reserve():
    ledger = SlotLedger()
    inv = {"n": ["0"]}
    sharing = GroupLimits(gpus=1, gpu_sharing=True)
    a = take(ledger, "ann", request=GPU1, limits=sharing, gpu_inventory=inv)
    b = take(ledger, "bob", request=GPU1, limits=sharing, gpu_inventory=inv)
    assert a.gpus == b.gpus == ("0",) and a.gpu_shared and b.gpu_shared
    e = refused(ledger, "cid", request=GPU1, limits=GroupLimits(gpus=1), gpu_inventory=inv)
    assert e.reason == "gpus_full"


def running(user, server="", pool="lab", object_id="c"):
    return Slot(
        pool=pool, user=user, server=server, state=RUNNING, object_id=object_id, claimed=False
    )


def test_adopt_keeps_pending_and_marks_orphans():
    ledger = SlotLedger()
    pending = take(ledger, "ann")
    stale = ledger.update(take(ledger, "old"), state=RUNNING, object_id="gone")
    ledger.claim("bob", "")  # claimed before adoption
    ledger.adopt(
        [
            running("bob", object_id="b"),
            running("cid", object_id="c"),
            running("ann", object_id="a"),
        ]
    )
    assert ledger.loaded
    assert ledger.get("ann", "") == pending  # pending wins over the engine's view
    assert ledger.get("old", "") is None and stale is not None
    assert ledger.get("bob", "").claimed is True
    assert [s.user for s in ledger.orphans()] == ["cid"]
    ledger.claim("cid", "")  # claimed after adoption
    assert ledger.orphans() == [] and ledger.get("cid", "").claimed
    ledger.claim("nobody", "x")
    assert ledger.get("nobody", "x") is None


def test_adopted_slots_count_against_limits():
    ledger = SlotLedger()
    ledger.adopt([running("bob"), running("cid", pool="other")])
    assert refused(ledger, "ann", limits=GroupLimits(max_servers=1)).reason == "group_full"
    take(ledger, "ann", pool="other", limits=GroupLimits(max_servers=2))


def test_reconcile_drops_only_vanished_running_slots():
    ledger = SlotLedger()
    ledger.adopt(
        [running("a", object_id="c1"), running("b", object_id="c2"), running("c", object_id="")]
    )
    pending = take(ledger, "p")
    with_id = ledger.update(take(ledger, "q"), object_id="c9")  # pending, not running yet
    gone = ledger.reconcile({"c1"})
    assert [s.user for s in gone] == ["b"]
    assert {s.user for s in ledger.slots()} == {"a", "c", "p", "q"}
    assert ledger.get("p", "") == pending and ledger.get("q", "") == with_id
    assert ledger.reconcile({"c1"}) == []
    assert [s.user for s in ledger.reconcile(set())] == ["a"]


def test_wait_queue_order():
    ledger = SlotLedger()
    t1, t2, t3 = (ledger.enqueue("lab") for _ in range(3))
    other = ledger.enqueue("other")
    assert len({t1, t2, t3, other}) == 4
    assert [ledger.position("lab", t) for t in (t1, t2, t3)] == [0, 1, 2]
    assert ledger.position("lab", other) == -1 and ledger.position("none", t1) == -1
    assert (ledger.queued("lab"), ledger.queued(), ledger.queued("none")) == (3, 4, 0)
    ledger.dequeue("lab", t2)
    assert [ledger.position("lab", t) for t in (t1, t2, t3)] == [0, -1, 1]
    ledger.dequeue("lab", t2)  # twice is harmless
    ledger.dequeue("lab", t1)
    ledger.dequeue("lab", t3)
    assert ledger.queued("lab") == 0 and ledger.queued() == 1


def test_reserve_respects_the_queue():
    ledger = SlotLedger()
    limits = GroupLimits(max_servers=5)
    t1, t2, t3 = (ledger.enqueue("lab") for _ in range(3))
    e = refused(ledger, "ann", limits=limits, ticket=t3)
    assert e.reason == "queued" and "2 spawn(s) wait ahead" in e.message
    assert "3 spawn(s) wait ahead" in refused(ledger, "bob", limits=limits).message
    take(ledger, "dan", pool="other", limits=limits)  # other groups are not blocked
    slot = take(ledger, "ann", limits=limits, ticket=t1)
    assert ledger.get("ann", "") == slot
    ledger.dequeue("lab", t1)
    take(ledger, "bob", limits=limits, ticket=t2)
    ledger.dequeue("lab", t2)
    ledger.dequeue("lab", t3)
    take(ledger, "cid", limits=limits)


def test_queue_head_is_still_subject_to_limits():
    ledger = SlotLedger()
    take(ledger, "bob", limits=GroupLimits(max_servers=1))
    ticket = ledger.enqueue("lab")
    e = refused(ledger, "ann", limits=GroupLimits(max_servers=1), ticket=ticket)
    assert e.reason == "group_full"


@pytest.mark.parametrize("how", ["release", "dequeue", "replace"])
async def test_wait_for_change_wakes_early(how):
    ledger = SlotLedger()
    take(ledger, "bob")
    ticket = ledger.enqueue("lab")
    waiter = asyncio.ensure_future(ledger.wait_for_change("lab", timeout=2))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    started = time.monotonic()
    if how == "release":
        ledger.release("bob", "")
    elif how == "dequeue":
        ledger.dequeue("lab", ticket)
    else:  # a restart replaces its own slot
        take(ledger, "bob", ticket=ticket)
    await asyncio.wait_for(waiter, 1)
    assert time.monotonic() - started < 0.5


async def test_wait_for_change_times_out_without_change():
    ledger = SlotLedger()
    take(ledger, "bob", pool="lab")
    take(ledger, "ann", pool="other")
    waiter = asyncio.ensure_future(ledger.wait_for_change("lab", timeout=0.1))
    ledger.release("ann", "")  # another group's change does not wake it
    started = time.monotonic()
    await asyncio.wait_for(waiter, 2)
    assert time.monotonic() - started >= 0.05
