"""Attacks on the JOBS boundary through Slurm, as ordinary users against the real stack.

The Hub runs the repository's ``jupyterhub_config.py`` with the ``slurm`` executor switched on
as a site would: ``LATTICEHUB_SLURM_PREFIX="sudo -n -u {username}"`` and
``LATTICEHUB_SYSTEM_USERNAME="lh-{username}"`` (``scripts/services.sh`` creates the accounts
``lh-ann`` and ``lh-bob``, and none for ``mallory``), job directories under
``/var/lib/latticehub`` where the accounts can reach them. The service runs as root:

- ann's job runs as ``lh-ann`` (Slurm's view and the kernel's), with ``#SBATCH --export=NONE``,
  and nothing of the service's environment (its Hub token, its database URL) reaches the
  job's processes; its directory and token file are ``lh-ann``'s alone (``lh-bob`` cannot
  read them);
- mallory, who has no cluster account, gets no job that runs as anybody, and her refused
  jobs do not hold her group's job slots.

The job's interpreter is a stand-in that sleeps (``LATTICEHUB_JOB_PYTHON``, an admin
setting): the host's Python lives under /root, where the accounts cannot go, and what is
checked is who runs the job and with what environment, not the training.
"""

from __future__ import annotations

import contextlib
import pwd
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.conftest import Stack, start_stack
from tests.security.test_jobs_boundaries import (
    ENDED,
    HARMLESS,
    TINY,
    environ,
    read,
    service_environ,
    uids,
    wait_job,
)
from tests.slurm.conftest import slurm  # noqa: F401 - the slurm tier's fixture (skips without one)

pytestmark = [pytest.mark.slurm]

SLURM = {"executor": "slurm", "partition": "debug", "cpus": 1, "mem": "256M", "time": 5}
#: Stands in for the job's Python: keeps the job's process alive to be inspected.
STAND_IN = "#!/bin/sh\nexec sleep 300\n"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """A host command (bounded)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def slurm_stack(make_hub, slurm) -> Iterator[tuple[Stack, Path]]:  # noqa: F811
    """A real stack whose service submits Slurm jobs as ``lh-<user>``: ``(stack, jobs dir)``.

    The jobs directory (mode 0711, traversable by the accounts) and every Slurm job submitted
    from it are removed afterwards, pass or fail.
    """
    if run("sudo", "-n", "-u", "lh-ann", "true").returncode:
        pytest.fail("root cannot sudo to lh-ann: run scripts/services.sh start (it creates lh-ann)")
    jobs_dir = Path("/var/lib/latticehub") / f"test-jobs-{secrets.token_hex(4)}"
    jobs_dir.mkdir(mode=0o711, parents=True)
    jobs_dir.chmod(0o711)
    stand_in = jobs_dir / "python-stand-in"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    extra = (
        "for _svc in c.JupyterHub.services:\n"
        "    if _svc['name'] == 'experiments':\n"
        f"        _svc['environment']['LATTICEHUB_JOB_PYTHON'] = {str(stand_in)!r}\n"
    )
    hub = make_hub(extra)
    hub.env["LATTICEHUB_SLURM_PREFIX"] = "sudo -n -u {username}"
    hub.env["LATTICEHUB_SYSTEM_USERNAME"] = "lh-{username}"
    hub.env["LATTICEHUB_JOBS_DIR"] = str(jobs_dir)
    try:
        yield start_stack(hub), jobs_dir
    finally:
        ours = {p.name for p in jobs_dir.iterdir() if p.is_dir()}
        names = run("squeue", "--noheader", "--format=%i %j").stdout.split("\n")
        ids = [line.split()[0] for line in names if line.strip() and line.split()[-1][3:] in ours]
        if ids:
            run("scancel", *ids)
        shutil.rmtree(jobs_dir, ignore_errors=True)


def job_processes(run_id: str) -> dict[int, dict[str, str]]:
    """Host processes (pid -> environment) that carry the run's id: the job's own."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                env = environ(entry.name)
                if env.get("LATTICEHUB_RUN_ID") == run_id:
                    found[int(entry.name)] = env
    return found


def test_slurm_job_runs_as_its_users_account_with_nothing_of_the_service(slurm_stack):
    stack, jobs_dir = slurm_stack
    body = {"project": "ann-slurm", "group": "lqcd", "config": TINY, "resources": SLURM}
    r = stack.call("ann", "POST", "/jobs", json=body)
    assert r.status_code == 201, r.text
    job = r.json()
    work = jobs_dir / job["id"]
    try:
        job = wait_job(stack, "ann", job["id"], {"RUNNING", *ENDED}, timeout=120)
        assert job["state"] == "RUNNING", (job, read(work / "stderr.log")[-2000:])
        ext = job["external_id"]
        assert run("squeue", "--noheader", "-j", ext, "-o", "%u").stdout.strip() == "lh-ann"
        assert "#SBATCH --export=NONE" in (work / "job.sh").read_text().splitlines()

        ann = pwd.getpwnam("lh-ann")
        assert (work.stat().st_uid, (work / "job.env").stat().st_uid) == (ann.pw_uid, ann.pw_uid)
        assert (work / "job.env").stat().st_mode & 0o077 == 0
        peek = run("sudo", "-n", "-u", "lh-bob", "cat", str(work / "job.env"))
        assert peek.returncode != 0 and "LATTICEHUB_TOKEN" not in peek.stdout

        deadline = time.monotonic() + 60
        procs = job_processes(job["run_id"])
        while not procs and time.monotonic() < deadline:
            time.sleep(0.5)
            procs = job_processes(job["run_id"])
        assert procs, f"no process of job {ext} found: {read(work / 'stderr.log')[-2000:]}"
        service = service_environ(stack)
        secret = service["JUPYTERHUB_API_TOKEN"]
        for pid, env in procs.items():
            assert set(uids(pid)) == {ann.pw_uid}, (pid, uids(pid))
            assert env.get("SLURM_JOB_ID") == ext, (pid, env.get("SLURM_JOB_ID"))
            leaked = {k for k in env if k.startswith(("JUPYTERHUB_", "JPY_", "CONFIGPROXY_"))}
            leaked |= {"LATTICEHUB_TRACKING_DB", "LATTICEHUB_ARTIFACT_DIR"} & set(env)
            assert not leaked, (pid, sorted(leaked))
            assert secret not in "\0".join(f"{k}={v}" for k, v in env.items())
            same = {k for k, v in env.items() if service.get(k) == v} - HARMLESS
            assert not same, (pid, sorted(same))
            assert env["LATTICEHUB_TOKEN"].startswith("lhjob_")
    finally:
        r = stack.call("ann", "DELETE", f"/jobs/{job['id']}")
    assert r.status_code == 200, r.text
    ended = wait_job(stack, "ann", job["id"], ENDED, timeout=90)
    assert ended["state"] == "KILLED", ended


def test_user_without_a_cluster_account_gets_no_job_and_holds_no_slots(slurm_stack):
    stack, _ = slurm_stack
    assert run("id", "lh-mallory").returncode != 0, "this test needs mallory without an account"
    body = {"project": "mallory-slurm", "group": "lqcd", "config": TINY, "resources": SLURM}
    before = run("squeue", "--noheader", "--format=%i").stdout.split()
    # as many as her group may hold at once (lqcd: max_jobs 4), and one more
    answers = []
    for _ in range(5):
        r = stack.call("mallory", "POST", "/jobs", json=body)
        answers.append((r.status_code, r.text[:200]))
        if r.status_code == 201:
            ended = wait_job(stack, "mallory", r.json()["id"], ENDED, timeout=60)
            assert ended["state"] == "FAILED", ended
    assert run("squeue", "--noheader", "--format=%i").stdout.split() == before
    jobs = stack.call("mallory", "GET", "/jobs").json()["items"]
    stuck = [(j["id"], j["state"], j["reason"]) for j in jobs if j["state"] not in ENDED]
    assert not stuck, f"refused jobs hold lqcd's job slots: {stuck}; answers: {answers}"
    # the group's other members can still run jobs
    r = stack.call("ann", "POST", "/jobs", json={**body, "project": "ann-slurm"})
    assert r.status_code == 201, r.text
    assert stack.call("ann", "DELETE", f"/jobs/{r.json()['id']}").status_code == 200
    assert wait_job(stack, "ann", r.json()["id"], ENDED, timeout=90)["state"] == "KILLED"
    # and mallory was told why, not given an internal error
    assert all(status in (201, 400, 403, 503) for status, _ in answers), answers
