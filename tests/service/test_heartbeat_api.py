"""Heartbeats through the API: a late one is recorded, and kill -9 of a client means LOST."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import requests

from hub_ext.experiments.heartbeats import HeartbeatMonitor
from hub_ext.experiments.jobs.store import SqlJobStore
from hub_ext.experiments.store.entities import RunStatus

ROOT = Path(__file__).resolve().parents[2]
H_ANN = {"Authorization": "token tok-ann"}


def lost_run(url: str, store) -> str:
    requests.post(f"{url}/api/v1/projects", json={"name": "hb", "group": "lqcd"}, headers=H_ANN)
    run_id = requests.post(f"{url}/api/v1/runs", json={"project": "hb"}, headers=H_ANN).json()["id"]
    requests.patch(
        f"{url}/api/v1/runs/{run_id}", json={"heartbeat": 1000}, headers=H_ANN
    ).raise_for_status()
    assert [r.id for r in store.expire_heartbeats(5000, 6000, 1)] == [run_id]
    return run_id


def test_late_heartbeat_is_recorded_and_does_not_revive_the_run(service):
    url, store = service
    run_id = lost_run(url, store)
    r = requests.patch(f"{url}/api/v1/runs/{run_id}", json={"heartbeat": 9000}, headers=H_ANN)
    assert r.status_code == 200 and r.json()["status"] == "LOST"
    kinds = [e.kind for e in SqlJobStore(store.engine).list_events(run_id)]
    assert kinds == ["late_heartbeat"]
    r = requests.patch(f"{url}/api/v1/runs/{run_id}", json={"status": "RUNNING"}, headers=H_ANN)
    assert r.status_code == 409 and "LOST" in r.json()["message"]
    assert "new run" in r.json()["message"]
    # the process may still say how it ended; that is recorded too
    r = requests.patch(
        f"{url}/api/v1/runs/{run_id}", json={"status": "FINISHED", "end_time": 9500},
        headers=H_ANN,
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "FINISHED"
    assert "after the run was marked LOST" in r.json()["status_reason"]
    assert r.json()["failure"] == {}
    kinds = [e.kind for e in SqlJobStore(store.engine).list_events(run_id)]
    assert kinds == ["late_heartbeat", "reported"]


CLIENT = textwrap.dedent(
    """
    import sys, time
    from latticehub.client import TrackingClient, start_run
    client = TrackingClient(sys.argv[1], "tok-ann")
    with start_run("hb-kill", group="lqcd", client=client, capture_output=False) as run:
        print(run.id, flush=True)
        while True:
            run.log_metric("alive", 1.0)
            time.sleep(0.1)
    """
)


@pytest.mark.slow
def test_kill_9_of_a_client_process_marks_its_run_lost(service, tmp_path):
    url, store = service
    events = SqlJobStore(store.engine)
    monitor = HeartbeatMonitor(store, timeout_s=2.0, events=events)
    stop = threading.Event()

    def sweeper():
        while not stop.wait(0.2):
            monitor.sweep()

    thread = threading.Thread(target=sweeper, daemon=True)
    thread.start()
    env = {
        **os.environ,
        "LATTICEHUB_HEARTBEAT_S": "0.3",
        "LATTICEHUB_SPOOL_DIR": str(tmp_path / "spool"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, url], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        run_id = proc.stdout.readline().strip()
        assert run_id, "the client did not start its run"
        time.sleep(3.0)  # longer than the timeout: heartbeats keep a live client RUNNING
        assert store.get_run(run_id).status == RunStatus.RUNNING
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while store.get_run(run_id).status != RunStatus.LOST and time.monotonic() < deadline:
            time.sleep(0.2)
        got = store.get_run(run_id)
        assert got.status == RunStatus.LOST, got.status
        assert "no heartbeat" in got.status_reason
        assert got.metrics["alive"].value == 1.0  # what it logged before dying is kept
        assert [e.kind for e in events.list_events(run_id)] == ["lost"]
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
