"""The jobs API on the real one-node Slurm: lifecycle through REST, one squeue per poll."""

from __future__ import annotations

import pwd
import subprocess
import sys
import time

import pytest

from hub_ext.experiments.jobs.executors import SlurmExecutor
from tests.service.test_jobs_local import TINY, Service, submit

pytestmark = pytest.mark.slurm

LIMITS = {
    "lqcd": {
        "executors": ["slurm"],
        "partitions": ["debug"],
        "max_jobs": 6,
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
        # one service, four payloads: the admin-set command changes between submissions
        patient = (
            "import signal, time; signal.signal(signal.SIGUSR1, signal.SIG_IGN); time.sleep(300)"  # noqa: E501
        )
        svc.manager.command = [sys.executable, "-c", patient]
        overtime = submit(svc, config={}, resources={**SLURM, "time": 1}).json()
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

        # Slurm checks time limits about every 30 s: TIMEOUT arrives 60-90 s after the start
        late = svc.wait_state(overtime["id"], {"FAILED", "FINISHED", "KILLED"}, timeout=180)
        assert late["state"] == "FAILED" and late["reason"].startswith("TIMEOUT"), late
        assert svc.store.get_run(overtime["run_id"]).status.value == "FAILED"
    finally:
        svc.stop()


def test_jobs_run_as_the_user_through_sudo_and_stay_private(tmp_path):
    import shutil
    import uuid
    from pathlib import Path

    from tests.service.test_jobs_local import ROOT

    if subprocess.run(["sudo", "-n", "-u", "lh-ann", "true"], capture_output=True).returncode:
        pytest.fail("root cannot sudo to lh-ann: run scripts/services.sh start (it creates lh-ann)")
    # a directory every account can traverse (pytest's tmp is private to root)
    jobs_dir = Path("/var/lib/latticehub") / f"test-jobs-{uuid.uuid4().hex[:8]}"
    jobs_dir.mkdir(mode=0o711, parents=True)
    jobs_dir.chmod(0o711)
    payload = (
        "import os; from latticehub.client import start_run\n"
        "with start_run('', run_id=os.environ['LATTICEHUB_RUN_ID'], capture_output=False) as r:\n"
        "    r.log_metrics({'uid': float(os.getuid())}, step=1)\n"
        "print('uid', os.getuid())"
    )
    as_user = SlurmExecutor(
        ["sudo", "-n", "-H", "-u", "{username}"], system_user=lambda u: f"lh-{u}"
    )
    svc = Service(
        tmp_path, ["/usr/bin/env", f"PYTHONPATH={ROOT}", "/usr/bin/python3", "-c", payload],
        validate_config=False, executors={"slurm": as_user}, limits=LIMITS,
        jobs_dir=jobs_dir, chown_to=lambda u: f"lh-{u}",
    )  # fmt: skip
    try:
        job = submit(svc, config={}, resources=SLURM).json()
        done = svc.wait_state(job["id"], {"FINISHED", "FAILED", "KILLED", "LOST"}, timeout=90)
        work = jobs_dir / job["id"]
        assert done["state"] == "FINISHED", (work / "stderr.log").read_text()[-2000:]
        ann_uid = pwd.getpwnam("lh-ann").pw_uid
        assert (work / "stdout.log").stat().st_uid == ann_uid
        assert f"uid {ann_uid}" in (work / "stdout.log").read_text()
        assert svc.store.get_run(job["run_id"]).metrics["uid"].value == ann_uid
        assert (work / "job.env").stat().st_uid == ann_uid  # readable by ann alone (0600)
        assert svc.call("GET", f"/jobs/{job['id']}", token="tok-bob").status_code == 404
        assert svc.call("DELETE", f"/jobs/{job['id']}", token="tok-bob").status_code == 404
    finally:
        svc.stop()
        shutil.rmtree(jobs_dir, ignore_errors=True)


def test_requeue_resumes_training_from_its_checkpoint_into_the_same_run(tmp_path):
    svc = service(tmp_path, [sys.executable, "-m", "flows.train", "--config", "{config}",
                             "--out", "{out}", "--resume", "true"], validate=True)  # fmt: skip
    try:
        config = {**TINY, "steps": 2000, "log_every": 10, "checkpoint_every": 50}
        job = submit(svc, config=config, resources=SLURM).json()
        run_id = job["run_id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # wait for a checkpoint and some metrics
            history = svc.store.get_metric_history(run_id, "loss")
            if history and history[-1].step >= 100:
                break
            time.sleep(0.5)
        subprocess.run(["scontrol", "requeue", job["external_id"]], check=True)
        # Slurm holds a requeued job back for a while (its begin time moves ~2 minutes on);
        # let it start now, as a free cluster would after the delay
        svc.wait_state(job["id"], {"QUEUED"}, timeout=60)
        subprocess.run(
            ["scontrol", "update", f"JobId={job['external_id']}", "StartTime=now"], check=False
        )
        done = svc.wait_state(job["id"], {"FINISHED", "FAILED", "KILLED", "LOST"}, timeout=240)
        assert done["state"] == "FINISHED", done
        kinds = [e.kind for e in svc.manager.jobs.list_events(run_id)]
        assert "requeued" in kinds
        run = svc.store.get_run(run_id)
        assert run.status.value == "FINISHED"
        steps = [m.step for m in svc.store.get_metric_history(run_id, "loss")]
        assert steps[-1] == 2000
        # the second attempt resumed: the steps before the last checkpoint were not trained twice
        assert steps.count(10) == 1
    finally:
        svc.stop()
