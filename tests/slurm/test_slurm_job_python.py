"""The notebook's launch to the batch nodes, for real: a Slurm job runs in the job environment.

Slurm jobs run as the user's own account (``sudo -n -u lh-<user> sbatch``), so their Python must
be one every account can run. The service's own (``.venv``, a link into ``/root/.pyenv``) is not:
the service hands jobs ``$LATTICEHUB_JOB_PYTHON``, which ``make up`` points at the job
environment that ``scripts/services.sh jobpython`` makes (``/opt/latticehub/job-venv``: Debian's
python3 with torch (CPU), numpy, ``flows`` and the tracking client installed as copies).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from hub_ext.experiments.jobs.executors import SlurmExecutor
from hub_ext.experiments.jobs.manager import default_command
from tests.conftest import service_missing
from tests.service.test_jobs_local import ROOT, Service, submit

pytestmark = pytest.mark.slurm

JOB_VENV = Path(os.environ.get("LATTICEHUB_JOB_VENV", "/opt/latticehub/job-venv"))
JOB_PYTHON = JOB_VENV / "bin" / "python"
LIMITS = {
    "lqcd": {
        "executors": ["slurm"],
        "partitions": ["debug"],
        "max_jobs": 2,
        "max_cpus": 1,
        "max_mem": "2G",
        "max_time": "0:10:00",
    }
}
SLURM = {"executor": "slurm", "cpus": 1, "mem": "1G", "time": 5}
TINY = {"L": 4, "n_layers": 2, "hidden": [4], "batch_size": 16, "steps": 10, "log_every": 5,
        "eval_samples": 300, "device": "cpu"}  # fmt: skip
TERMINAL = {"FINISHED", "FAILED", "KILLED", "LOST"}
# what a tracked `python -m flows.train` imports, and where each module comes from
PROBE = """
import json, os, sys
import flows.train, flows.tracking, latticehub.client, numpy, torch
names = ("flows", "latticehub.client", "numpy", "torch")
mods = {m: sys.modules[m].__file__ for m in names}
print(json.dumps({"uid": os.getuid(), "executable": sys.executable, "prefix": sys.prefix,
                  "modules": mods, "torch": torch.__version__, "cuda": torch.version.cuda}))
"""


@pytest.fixture(scope="module")
def job_python(slurm) -> str:
    """The job environment's interpreter (made by ``scripts/services.sh jobpython``)."""
    if not os.access(JOB_PYTHON, os.X_OK):
        service_missing(
            f"the job environment {JOB_VENV} (no {JOB_PYTHON})",
            "run scripts/services.sh jobpython (as root)",
        )
    if subprocess.run(["sudo", "-n", "-u", "lh-ann", "true"], capture_output=True).returncode:
        pytest.fail("root cannot sudo to lh-ann: run scripts/services.sh start (it creates lh-ann)")
    return str(JOB_PYTHON)


def test_the_job_python_runs_as_a_user_account_with_nothing_from_root_or_the_checkout(
    job_python,
):
    probe = subprocess.run(
        ["sudo", "-n", "-u", "lh-ann", "env", "-i", "PATH=/usr/bin:/bin", job_python, "-c", PROBE],
        capture_output=True, text=True, cwd="/", timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, (
        f"lh-ann cannot run {job_python}: {probe.stderr[-2000:]}\n"
        "rebuild it with scripts/services.sh jobpython"
    )
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen["uid"] == pwd.getpwnam("lh-ann").pw_uid
    assert seen["executable"] == job_python
    assert not os.path.realpath(job_python).startswith("/root/")
    for module, path in seen["modules"].items():
        real = os.path.realpath(path)
        assert real.startswith(os.path.realpath(JOB_VENV) + "/"), (module, path)
        assert not real.startswith((f"{ROOT}/", "/root/")), (module, path)  # copies, not links
    assert seen["torch"].startswith("2.") and seen["cuda"] is None  # the CPU build


def test_a_flows_training_job_on_slurm_runs_as_the_user_in_the_job_environment(
    job_python, tmp_path
):
    # a directory every account can traverse (pytest's tmp is private to root)
    jobs_dir = Path("/var/lib/latticehub") / f"test-jobs-{uuid.uuid4().hex[:8]}"
    jobs_dir.mkdir(mode=0o711, parents=True)
    jobs_dir.chmod(0o711)
    as_user = SlurmExecutor(["sudo", "-n", "-u", "{username}"], system_user=lambda u: f"lh-{u}")
    svc = Service(
        tmp_path, default_command(), validate_config=True, executors={"slurm": as_user},
        limits=LIMITS, jobs_dir=jobs_dir, chown_to=lambda u: f"lh-{u}",
    )  # fmt: skip
    # the JobManager's python= (what the service takes from $LATTICEHUB_JOB_PYTHON)
    svc.manager.python = job_python
    job = None
    try:
        r = submit(svc, config=TINY, resources=SLURM)
        assert r.status_code == 201, r.text
        job = r.json()
        done = svc.wait_state(job["id"], TERMINAL, timeout=180)
        work = jobs_dir / job["id"]
        stderr = (work / "stderr.log").read_text() if (work / "stderr.log").exists() else ""
        assert done["state"] == "FINISHED", (done, stderr[-3000:])
        assert f"{job_python} -m flows.train" in (work / "job.sh").read_text()

        ann_uid = pwd.getpwnam("lh-ann").pw_uid
        assert (work / "stdout.log").stat().st_uid == ann_uid
        summary = json.loads((work / "stdout.log").read_text().strip().splitlines()[-1])
        assert summary["steps"] == 10 and "ess" in summary and "acceptance" in summary

        run = svc.store.get_run(job["run_id"])
        assert run.status.value == "FINISHED"
        assert [m.step for m in svc.store.get_metric_history(run.id, "loss")] == [5, 10]
        assert run.params["L"] == "4"
        assert run.environment["executable"] == job_python
        assert any(p.startswith("torch==") for p in run.environment["packages"])
        assert {"model/checkpoint.pt", "summary.json"} <= {
            a.path for a in svc.store.list_artifacts(run.id)
        }
    finally:
        svc.stop()
        if job is not None:
            left = svc.manager.jobs.get_job(job["id"])
            if left.external_id and left.state.value not in TERMINAL:
                subprocess.run(["scancel", left.external_id], capture_output=True, check=False)
        shutil.rmtree(jobs_dir, ignore_errors=True)
