"""accounting/store.py and recorder.py: sessions from scripted engine events, on both stores.

The engine is a fake that replays a script of starts and stops (with the engine's own event
times) and lists what runs; the clock is the test's. The recorded container-hours of the
script must equal the sums worked out by hand.
"""

from __future__ import annotations

import pytest

from hub_ext.quotas.accounting.recorder import CURSOR, UsageRecorder
from hub_ext.quotas.accounting.sessions import EXACT, GIB, OBSERVED, Session, aggregate
from hub_ext.quotas.accounting.store import SqlUsageStore
from hub_ext.quotas.docker_source import EngineUnavailable
from tests.quotas.fakes import Clock, ScriptedEngine

H = 3600.0
T0 = 1_795_000_000.0  # 2026-11-18 (UTC), a round time far from midnight effects below


@pytest.fixture
def store(store_uri):
    s = SqlUsageStore(store_uri)
    yield s
    s.close()


def _hours(store, since, until, now, by="user"):
    rows = aggregate(store.sessions(since=since, until=until), since=since, until=until, now=now,
                     period="month", by=by)  # fmt: skip
    return {(r.group, r.user): round(r.container_hours, 6) for r in rows}, rows


async def test_scripted_starts_and_stops_sum_to_the_expected_hours(store):
    clock, engine = Clock(T0), ScriptedEngine()
    recorder = UsageRecorder(store, engine, clock=clock, lookback=100)
    engine.start("c-ann", T0 + 10, "lqcd", "ann", **{"org.latticehub.gpus": "0,1"})
    engine.start("c-ben", T0 + 20, "lqcd", "ben")
    clock.now = T0 + 100
    assert await recorder.record() == {"events": 2, "opened": 2, "closed": 0}
    engine.stop("c-ann", T0 + 10 + 1.5 * H)
    engine.start("c-dan", T0 + 2 * H, "nuclear", "dan")
    clock.now = T0 + 3 * H
    counts = await recorder.record()
    assert (counts["opened"], counts["closed"]) == (1, 1)
    engine.stop("c-ben", T0 + 20 + 3.25 * H)
    clock.now = T0 + 4 * H
    await recorder.record()
    # dan still runs at 4 h: 2 h so far
    hours, rows = _hours(store, T0 - 86400, T0 + 86400, clock.now)
    assert hours == {("lqcd", "ann"): 1.5, ("lqcd", "ben"): 3.25, ("nuclear", "dan"): 2.0}
    assert {r.user: round(r.gpu_hours, 6) for r in rows} == {"ann": 3.0, "ben": 0.0, "dan": 0.0}
    # the engine's event times, not the rounds' times, are what was stored
    ann = next(s for s in store.sessions(since=0, until=T0 + 86400) if s.user == "ann")
    assert (ann.start, ann.end, ann.end_source) == (T0 + 10, T0 + 10 + 1.5 * H, EXACT)
    assert store.get_cursor(CURSOR) == clock.now
    # each round read the events since the last one: nothing read twice, nothing skipped
    assert engine.reads == [(T0, T0 + 100), (T0 + 100, T0 + 3 * H), (T0 + 3 * H, T0 + 4 * H)]


async def test_rounds_are_idempotent_and_a_restarted_recorder_does_not_double_count(store):
    clock, engine = Clock(T0), ScriptedEngine()
    engine.start("c1", T0 + 5, "lqcd", "ann")
    engine.stop("c1", T0 + 5 + H)
    engine.start("c2", T0 + 10, "lqcd", "ben")
    clock.now = T0 + 2 * H
    first = UsageRecorder(store, engine, clock=clock, lookback=3 * H)
    await first.record()
    await first.record()
    # a new process (service restart) replays the whole log from far back
    store.set_cursor(CURSOR, T0 - 3 * H)
    await UsageRecorder(store, engine, clock=clock).record()
    hours, rows = _hours(store, T0 - 86400, T0 + 86400, clock.now)
    assert hours == {("lqcd", "ann"): 1.0, ("lqcd", "ben"): pytest.approx(2 - 10 / H, abs=1e-6)}
    assert sum(r.sessions for r in rows) == 2
    assert len(store.open_sessions()) == 1


async def test_a_server_seen_running_without_its_start_event_is_opened_and_refined(store):
    clock, engine = Clock(T0 + H), ScriptedEngine()
    engine.start("c1", T0 + 30, "lqcd", "ann")
    engine.keep_events = False  # the engine's event log no longer holds the start
    recorder = UsageRecorder(store, engine, clock=clock)
    assert (await recorder.record())["opened"] == 1
    (s,) = store.open_sessions()
    assert s.start == T0 + 30  # its creation time, as listed
    # a stop that the log also lost is dated by the first round that sees the server gone
    engine.stop("c1", T0 + 1.2 * H)
    clock.now = T0 + 1.25 * H
    assert (await recorder.record())["closed"] == 1
    (s,) = store.sessions(since=0, until=T0 + 86400)
    assert (s.end, s.end_source) == (T0 + 1.25 * H, OBSERVED)
    # once the exact stop turns up (the log is back), it corrects the observed one
    engine.keep_events = True
    store.set_cursor(CURSOR, T0)
    clock.now = T0 + 1.5 * H
    await recorder.record()
    (s,) = store.sessions(since=0, until=T0 + 86400)
    assert (s.end, s.end_source) == (T0 + 1.2 * H, EXACT)


async def test_an_engine_failure_changes_nothing_and_the_next_round_catches_up(store):
    clock, engine = Clock(T0), ScriptedEngine()
    recorder = UsageRecorder(store, engine, clock=clock, lookback=60)
    engine.start("c1", T0 - 30, "lqcd", "ann")
    await recorder.record()
    engine.fail = True
    engine.stop("c1", T0 + 600)
    clock.now = T0 + 900
    with pytest.raises(EngineUnavailable):
        await recorder.record()
    assert store.get_cursor(CURSOR) == T0 and len(store.open_sessions()) == 1
    engine.fail = False
    clock.now = T0 + 1200
    await recorder.record()
    (s,) = store.sessions(since=0, until=T0 + 86400)
    assert (s.start, s.end, s.end_source) == (T0 - 30, T0 + 600, EXACT)


async def test_objects_of_no_group_are_not_recorded(store):
    clock, engine = Clock(T0), ScriptedEngine()
    engine.start("c1", T0 - 30, "", "ann")  # labelled for the hub but for no group
    await UsageRecorder(store, engine, clock=clock, lookback=60).record()
    assert store.sessions(since=0, until=T0 + 86400) == []


def test_store_reads_by_window_and_group(store):
    store.record_start(Session("a", "lqcd", "ann", gpus=1, cpus=2.0, mem_bytes=GIB, start=100.0))
    store.record_start(Session("b", "nuclear", "dan", start=200.0))
    store.record_end("a", 300.0)
    assert not store.record_start(Session("b", "nuclear", "dan", start=250.0))  # already open
    assert not store.record_end("ghost", 400.0)
    assert [s.id for s in store.sessions(since=0, until=1000)] == ["a", "b"]
    assert [s.id for s in store.sessions(since=300, until=1000)] == ["b"]  # a ended at 300
    assert [s.id for s in store.sessions(since=0, until=150)] == ["a"]
    assert [s.id for s in store.sessions(since=0, until=1000, groups=["lqcd"])] == ["a"]
    (a,) = store.sessions(since=0, until=1000, groups={"lqcd"})
    assert (a.gpus, a.cpus, a.mem_bytes, a.end, a.end_source) == (1, 2.0, GIB, 300.0, EXACT)
    # the same container started again is a new session
    assert store.record_start(Session("a", "lqcd", "ann", start=500.0))
    assert [(s.id, s.start) for s in store.open_sessions()] == [("b", 200.0), ("a", 500.0)]
    # an end before the start (clock skew) is clamped to the start
    store.record_end("b", 150.0)
    (b,) = store.sessions(since=0, until=1000, groups=["nuclear"])
    assert b.end == 200.0
    store.set_cursor("x", 1.5)
    store.set_cursor("x", 2.5)
    assert (store.get_cursor("x"), store.get_cursor("y")) == (2.5, None)
