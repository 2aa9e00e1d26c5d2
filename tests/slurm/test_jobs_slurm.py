"""The jobs API on the real one-node Slurm: lifecycle through REST, one squeue per poll."""

from __future__ import annotations

import sys

import pytest

from hub_ext.experiments.jobs.executors import SlurmExecutor
from tests.service.test_jobs_local import TINY, Service, submit

pytestmark = pytest.mark.slurm

LIMITS = {
    "lqcd": {
        "executors": ["slurm"],
        "partitions": ["debug"],
        "max_jobs": 4,
        "max_cpus": 1,
        "max_mem": "2G",
        "max_time": "0:10:00",
    }
}
SLURM = {"executor": "slurm", "cpus": 1, "mem": "1G", "time": 5}


@pytest.fixture(autouse=True)
def _cluster(slurm, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def service(tmp_path, command, validate=False):
    calls = []

    async def counting_run(argv, timeout=30):
        from hub_ext.experiments.jobs.executors import run_command

        calls.append(argv[0])
        return await run_command(argv, timeout)

    svc = Service(
        tmp_path, command, validate_config=validate,
        executors={"slurm": SlurmExecutor(run=counting_run)}, limits=LIMITS,
    )  # fmt: skip
    svc.calls = calls
    return svc


def test_training_job_through_slurm_finishes_with_metrics(tmp_path):
    svc = service(tmp_path, [sys.executable, "-m", "flows.train", "--config", "{config}",
                             "--out", "{out}", "--resume", "true"], validate=True)  # fmt: skip
    try:
        r = submit(svc, config=TINY, resources=SLURM)
        assert r.status_code == 201, r.text
        job = r.json()
        assert job["external_id"].isdigit()
        done = svc.wait_state(job["id"], {"FINISHED", "FAILED", "KILLED", "LOST"}, timeout=120)
        assert done["state"] == "FINISHED", done
        assert done["node"]
        run = svc.store.get_run(job["run_id"])
        assert run.status.value == "FINISHED"
        assert [m.step for m in svc.store.get_metric_history(run.id, "loss")] == [5, 10, 15, 20]
        kinds = [e.kind for e in svc.manager.jobs.list_events(run.id)]
        assert kinds[:2] == ["submitted", "queued"] and "ended" in kinds
        polls = svc.calls.count("squeue")
        assert polls >= 1 and svc.calls.count("sbatch") == 1
    finally:
        svc.stop()


def test_cancel_failure_and_out_of_memory(tmp_path):
    hog = "import time; x = bytearray(1500 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"  # noqa: E501
    svc = service(tmp_path, [sys.executable, "-c", "pass"])
    try:
        # one service, three payloads: the admin-set command changes between submissions
        svc.manager.command = [sys.executable, "-c", "import time; time.sleep(60)"]
        sleeper = submit(svc, config={}, resources=SLURM).json()
        svc.manager.command = [
            sys.executable,
            "-c",
            "import sys; print('boom', file=sys.stderr); sys.exit(4)",
        ]
        failing = submit(svc, config={}, resources=SLURM).json()
        svc.manager.command = [sys.executable, "-c", hog]
        hungry = submit(svc, config={}, resources={**SLURM, "mem": "200M"}).json()

        svc.wait_state(sleeper["id"], {"RUNNING"}, timeout=60)
        assert svc.call("DELETE", f"/jobs/{sleeper['id']}").status_code == 200
        killed = svc.wait_state(sleeper["id"], {"KILLED", "FAILED", "FINISHED"}, timeout=60)
        assert killed["state"] == "KILLED" and "CANCELLED" in killed["reason"]
        assert svc.store.get_run(sleeper["run_id"]).status.value == "KILLED"

        failed = svc.wait_state(failing["id"], {"FAILED", "FINISHED", "KILLED"}, timeout=60)
        assert failed["state"] == "FAILED" and failed["exit_code"] == 4
        run = svc.store.get_run(failing["run_id"])
        assert run.status.value == "FAILED" and "boom" in run.failure["stderr_tail"]

        oom = svc.wait_state(hungry["id"], {"FAILED", "FINISHED", "KILLED"}, timeout=90)
        assert oom["state"] == "FAILED" and "OUT_OF_MEMORY" in oom["reason"], oom
        assert svc.store.get_run(hungry["run_id"]).status_reason.startswith("OUT_OF_MEMORY")
    finally:
        svc.stop()
