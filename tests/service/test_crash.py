"""kill -9 of the service during a write storm loses no acknowledged write."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hub_ext.experiments.store import SqlStore
from latticehub.client import TrackingAPIError, TrackingClient
from tests.hub import free_port

ROOT = Path(__file__).resolve().parents[2]


def start(db_url: str, port: int, blobs: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.service.standalone", db_url, str(port), str(blobs)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.slow
def test_kill_9_during_write_storm_keeps_every_acknowledged_write(tmp_path, store_uri):
    db_url = store_uri
    port = free_port()
    url = f"http://127.0.0.1:{port}/services/experiments"
    proc = start(db_url, port, tmp_path / "blobs")
    client = TrackingClient(url, "tok-ann", timeout=5)
    project = client.project("storm", group="lqcd")
    runs = [client.request("POST", "/runs", {"project": project["id"]})["id"] for _ in range(8)]
    acked: dict[str, list[int]] = {r: [] for r in runs}
    stop = threading.Event()

    def writer(run_id: str) -> None:
        c = TrackingClient(url, "tok-ann", timeout=5)
        step = 0
        while not stop.is_set() and step < 100_000:
            batch = [{"key": "m", "value": float(step + i), "step": step + i} for i in range(50)]
            try:
                c.request("POST", f"/runs/{run_id}/batch", {"metrics": batch})
            except (OSError, TrackingAPIError):
                return  # the service died: this batch was not acknowledged
            acked[run_id].extend(range(step, step + 50))
            step += 50

    threads = [threading.Thread(target=writer, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    time.sleep(2.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    total = sum(len(v) for v in acked.values())
    assert total > 1000, "the storm wrote too little to mean anything"

    # the database is intact and has every acknowledged point
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    proc = start(db_url, port, tmp_path / "blobs")
    try:
        store = SqlStore(db_url)
        for run_id, steps in acked.items():
            stored = {m.step for m in store.get_metric_history(run_id, "m", limit=1_000_000)}
            assert set(steps) <= stored, f"run {run_id} lost acknowledged points"
            if steps:
                assert store.get_run(run_id).metrics["m"].step >= max(steps)
        # and it takes writes again
        client.request(
            "POST", f"/runs/{runs[0]}/batch", {"metrics": [{"key": "after", "value": 1}]}
        )
        assert store.get_run(runs[0]).metrics["after"].value == 1.0
        store.close()
    finally:
        proc.kill()
        proc.wait(10)
