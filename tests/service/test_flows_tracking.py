"""`python -m flows.train` records itself into a tracking run made beforehand (as jobs do)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from latticehub.client import TrackingClient

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--L", "4", "--n_layers", "2", "--hidden", "4", "--batch_size", "16", "--device", "cpu"]


def queued_run(url):
    client = TrackingClient(url, "tok-ann")
    project = client.project("flows-ci", "lqcd")
    return client.request("POST", "/runs", {"project": project["id"], "name": "phi4-tiny"})


def env_for(url, run_id):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATTICEHUB_", "JUPYTERHUB_"))}
    return {
        **env,
        "OMP_NUM_THREADS": "1",
        "LATTICEHUB_TRACKING_URL": url,
        "LATTICEHUB_TOKEN": "tok-ann",
        "LATTICEHUB_RUN_ID": run_id,
    }


def test_training_logs_params_metrics_output_and_artifacts(service, tmp_path):
    url, store = service
    run = queued_run(url)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.train",
            *TINY,
            "--steps",
            "20",
            "--log_every",
            "5",
            "--eval_samples",
            "1000",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env_for(url, run["id"]),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    got = store.get_run(run["id"])
    assert got.status.value == "FINISHED"
    assert got.params["L"] == "4" and got.params["action"] == "phi4"
    assert [m.step for m in store.get_metric_history(run["id"], "loss")] == [5, 10, 15, 20]
    assert got.metrics["final_acceptance"].value == summary["acceptance"]
    paths = {a.path for a in store.list_artifacts(run["id"], "")}
    assert {"model/checkpoint.pt", "summary.json"} <= paths
    stdout = [line.text for line in store.read_logs(run["id"], "stdout")]
    assert json.loads(stdout[-1])["steps"] == 20  # the summary line reached the run's log
    assert any("steps/s" in line.text for line in store.read_logs(run["id"], "stderr"))
    assert not (tmp_path / "run").exists()  # no local copy when the service records it


def test_sigterm_marks_the_run_killed_after_a_checkpoint(service, tmp_path):
    url, store = service
    run = queued_run(url)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.train",
            *TINY,
            "--steps",
            "100000",
            "--log_every",
            "1",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env_for(url, run["id"]),
    )
    deadline = time.monotonic() + 60
    for line in proc.stderr:
        if "step 10/" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    got = store.get_run(run["id"])
    assert got.status.value == "KILLED"
    assert "SIGTERM" in (got.failure or {}).get("message", "")
    assert (tmp_path / "checkpoint.pt").exists()
