"""Silent runs become LOST (on SQLite and PostgreSQL), with the reason on the timeline."""

from __future__ import annotations

import pytest

from hub_ext.experiments.heartbeats import HeartbeatMonitor
from hub_ext.experiments.jobs.store import SqlJobStore
from hub_ext.experiments.store.entities import RunStatus

T0 = 1_800_000_000_000


def runs_with_beats(store, beats: dict[str, int | None]) -> dict[str, str]:
    project = store.create_project("hb", owner="ann", group="lqcd")
    ids = {}
    for name, beat in beats.items():
        run = store.create_run(project.id, user="ann", name=name, start_time=T0)
        if beat is not None:
            store.update_run(run.id, heartbeat=beat)
        ids[name] = run.id
    return ids


def test_only_silent_runs_that_sent_heartbeats_become_lost(store):
    ids = runs_with_beats(
        store,
        {"silent": T0, "fresh": T0 + 170_000, "never": None, "edge": T0 + 120_000},
    )
    finished = store.get_run(ids["silent"])
    done = store.create_run(finished.project_id, user="ann", name="done", start_time=T0)
    store.update_run(done.id, heartbeat=T0, status=RunStatus.FINISHED, end_time=T0 + 1)
    events = SqlJobStore(store.engine)
    woken: list[str] = []
    monitor = HeartbeatMonitor(
        store, timeout_s=60, events=events, notify=woken.append, clock=lambda: T0 + 180_000
    )
    lost = monitor.sweep()
    assert {r.id for r in lost} == {ids["silent"]}  # "edge" is exactly 60 s old: kept
    got = store.get_run(ids["silent"])
    assert got.status == RunStatus.LOST and got.end_time == T0 + 180_000
    assert "no heartbeat for 180 s (timeout 60 s)" in got.status_reason
    assert got.failure["type"] == "HeartbeatLost" and got.failure["last_heartbeat"] == T0
    assert [(e.kind, e.message) for e in events.list_events(got.id)] == [
        ("lost", got.status_reason)
    ]
    assert woken == [ids["silent"]]
    for name in ("fresh", "never", "edge"):
        assert store.get_run(ids[name]).status == RunStatus.RUNNING
    assert store.get_run(done.id).status == RunStatus.FINISHED
    assert monitor.sweep() == []  # a LOST run is not expired twice


@pytest.mark.parametrize("timeout", [0, -5])
def test_monitor_refuses_a_non_positive_timeout(store, timeout):
    with pytest.raises(ValueError, match="positive seconds"):
        HeartbeatMonitor(store, timeout_s=timeout)
