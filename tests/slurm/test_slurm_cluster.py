"""The local Slurm behaves as latticehub's Slurm executor expects (docs/slurm.md).

Submission with ``sbatch --parsable``, the terminal states and reasons that one ``squeue`` call
reports (COMPLETED, FAILED + exit code, OUT_OF_MEMORY, TIMEOUT, CANCELLED), PENDING reasons, the
two partitions, and submitting as another user through a ``sudo`` command prefix. The TIMEOUT
job is submitted first (Slurm's smallest time limit is one minute) and checked last, so the whole
file takes a little over a minute.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import service_missing

from .conftest import FINISHED, SlurmCluster, run_tool

pytestmark = pytest.mark.slurm

TEST_USER = os.environ.get("LATTICEHUB_TEST_SLURM_USER", "lh-ann")
OTHER_USER = os.environ.get("LATTICEHUB_TEST_SLURM_OTHER_USER", "lh-bob")
# Eat memory in 16 MB steps, touching every page, up to 1 GB, then linger so even a once a
# second RSS poll (jobacct_gather/linux + OverMemoryKill) sees it.
MEMORY_HOG = (
    "python3 -c 'import time\n"
    'blocks = [b"x" * (16 << 20) for _ in range(64)]\n'
    'print("survived", flush=True)\n'
    "time.sleep(20)'"
)


@pytest.fixture(scope="module", autouse=True)
def timeout_job(slurm: SlurmCluster) -> Iterator[str]:
    """A job over its 1-minute limit, started before the other tests (checked in the last)."""
    cluster = slurm.child("timeout")
    job_id, _ = cluster.sbatch("sleeper", "--time=1", wrap="sleep 600")
    cluster.wait(job_id, {"RUNNING"}, timeout=15)
    try:
        yield job_id
    finally:
        cluster.cancel()


def test_sbatch_parsable_answers_within_a_second(jobs: SlurmCluster) -> None:
    job_id, took = jobs.sbatch("quick", wrap="true")
    assert took < 1.0, f"sbatch --parsable took {took:.2f}s"
    assert jobs.wait(job_id).state == "COMPLETED"


def test_job_runs_and_writes_its_output(jobs: SlurmCluster) -> None:
    job_id, _ = jobs.sbatch("hello", wrap='echo "hello from $SLURM_JOB_ID on $SLURMD_NODENAME"')
    job = jobs.wait(job_id)
    assert (job.state, job.reason, job.exit_code) == ("COMPLETED", "None", 0)
    assert job.node == jobs.node
    assert job.partition == "debug"  # the default partition
    assert jobs.output("hello", job_id).strip() == f"hello from {job_id} on {jobs.node}"


def test_nonzero_exit_is_failed_with_its_exit_code(jobs: SlurmCluster) -> None:
    job_id, _ = jobs.sbatch("exit3", wrap="echo about to fail; exit 3")
    job = jobs.wait(job_id)
    assert (job.state, job.reason) == ("FAILED", "NonZeroExitCode")
    assert (job.exit_code, job.exit_status, job.signal) == (3 << 8, 3, 0)
    assert job.node == jobs.node


def test_job_over_its_memory_limit_is_killed(jobs: SlurmCluster) -> None:
    job_id, _ = jobs.sbatch("oom", "--mem=64M", wrap=MEMORY_HOG)
    job = jobs.wait(job_id, timeout=40)
    output = jobs.output("oom", job_id)
    assert "survived" not in output
    if jobs.memory_enforcement == "cgroup":
        # task/cgroup: the kernel's OOM killer in the job's memory cgroup
        assert (job.state, job.reason) == ("OUT_OF_MEMORY", "OutOfMemory")
        assert job.exit_code == 253  # Slurm's SIG_OOM as the "signal"
        assert "oom-kill event" in output
    else:
        # OverMemoryKill: slurmstepd SIGKILLs the step; squeue cannot tell it from other kills
        assert (job.state, job.signal) == ("FAILED", 9)
        assert "exceeded memory limit" in output


def test_scancel_of_a_running_job(jobs: SlurmCluster) -> None:
    job_id, _ = jobs.sbatch("cancel", wrap="sleep 600")
    assert jobs.wait(job_id, {"RUNNING"}, timeout=15).node == jobs.node
    run_tool(["scancel", job_id])
    job = jobs.wait(job_id, timeout=15)
    assert (job.state, job.reason, job.node) == ("CANCELLED", "None", jobs.node)
    assert job.signal == 15  # the batch shell got SIGTERM


def test_pending_reasons(jobs: SlurmCluster, timeout_job: str) -> None:
    held, _ = jobs.sbatch("held", "--hold", wrap="true")
    later, _ = jobs.sbatch("later", "--begin=now+1hour", wrap="true")
    after, _ = jobs.sbatch("after", f"--dependency=afterok:{held}", wrap="true")
    too_long, _ = jobs.sbatch("toolong", "--time=3:00:00", wrap="true")  # debug MaxTime=2:00:00
    # the node is not free while the timeout job runs
    exclusive, _ = jobs.sbatch("exclusive", "--exclusive", wrap="true")
    expected = {
        held: "JobHeldUser",
        later: "BeginTime",
        after: "Dependency",
        too_long: "PartitionTimeLimit",
        exclusive: "Resources",
    }
    for job_id, reason in expected.items():
        # PartitionConfig, Resources, ... come from a scheduler pass, a second or so after submit
        job = jobs.wait(job_id, {"PENDING"}, timeout=15, reason=reason)
        assert job.node == ""
    # one call shows them all; cancelled while pending, a job keeps its pending reason
    run_tool(["scancel", held, later])
    assert jobs.wait(held).state == "CANCELLED"
    statuses = jobs.squeue(expected)
    assert {job_id: statuses[job_id].state for job_id in expected} == {
        held: "CANCELLED",
        later: "CANCELLED",
        after: "PENDING",
        too_long: "PENDING",
        exclusive: "PENDING",
    }
    assert statuses[held].reason == "JobHeldUser"


def test_partitions(jobs: SlurmCluster) -> None:
    job_id, _ = jobs.sbatch("long", "--partition=long", "--time=3:00:00", wrap="true")
    job = jobs.wait(job_id)
    assert (job.state, job.partition) == ("COMPLETED", "long")
    refused = run_tool(
        ["sbatch", "--parsable", "--partition=nosuch", f"--chdir={jobs.workdir}", "--wrap=true"],
        check=False,
    )
    assert refused.returncode != 0
    assert "invalid partition" in refused.stderr.lower()


def test_one_squeue_call_for_many_jobs(jobs: SlurmCluster, timeout_job: str) -> None:
    ok, _ = jobs.sbatch("ok", wrap="true")
    fail, _ = jobs.sbatch("fail", wrap="exit 7")
    killed, _ = jobs.sbatch("killed", wrap="kill -9 $$")
    held, _ = jobs.sbatch("held", "--hold", wrap="true")
    for job_id in (ok, fail, killed):
        jobs.wait(job_id)
    statuses = jobs.squeue()  # ONE call, every job Slurm still knows
    rows = {
        job_id: (job.state, job.reason, job.exit_status, job.signal)
        for job_id, job in statuses.items()
        if job_id in {ok, fail, killed, held, timeout_job}
    }
    assert rows == {
        ok: ("COMPLETED", "None", 0, 0),
        fail: ("FAILED", "NonZeroExitCode", 7, 0),
        killed: ("FAILED", "JobLaunchFailure", 0, 9),  # Slurm 22.05's reason for a signal
        held: ("PENDING", "JobHeldUser", 0, 0),
        timeout_job: ("RUNNING", "None", 0, 0),
    }
    assert {statuses[j].node for j in (ok, fail, killed, timeout_job)} == {jobs.node}
    assert statuses[held].node == ""


def _sudo_prefix(user: str) -> list[str]:
    try:
        pwd.getpwnam(user)
    except KeyError:
        service_missing(f"the test user {user}", "run scripts/services.sh start (as root)")
    prefix = ["sudo", "-n", "-E", "-H", "-u", user]
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=10).returncode != 0:
        service_missing(
            f"passwordless sudo to {user}", "run the tests as root after scripts/services.sh start"
        )
    return prefix


def test_submit_as_another_user_through_sudo(jobs: SlurmCluster) -> None:
    as_ann = _sudo_prefix(TEST_USER)
    job_id, took = jobs.sbatch("whoami", wrap='echo "$(id -un) $HOME"; sleep 600', as_prefix=as_ann)
    assert took < 2.0
    job = jobs.wait(job_id, {"RUNNING"}, timeout=15)
    assert job.user == TEST_USER
    # another user may not cancel it
    as_bob = _sudo_prefix(OTHER_USER)
    refused = run_tool([*as_bob, "scancel", job_id], check=False)
    assert refused.returncode != 0 and "Access/permission denied" in refused.stderr
    assert jobs.squeue([job_id])[job_id].state == "RUNNING"
    # its owner may
    run_tool([*as_ann, "scancel", job_id])
    job = jobs.wait(job_id)
    assert (job.state, job.user) == ("CANCELLED", TEST_USER)
    home = pwd.getpwnam(TEST_USER).pw_dir
    assert jobs.output("whoami", job_id).splitlines()[0].split() == [TEST_USER, home]
    assert (
        os.stat(f"{jobs.workdir}/{jobs.prefix}whoami-{job_id}.out").st_uid
        == pwd.getpwnam(TEST_USER).pw_uid
    )


def test_job_over_its_time_limit_times_out(slurm: SlurmCluster, timeout_job: str) -> None:
    # Slurm's smallest limit is a minute (--time=1; --time=0:10 is rounded up to 1:00)
    job = slurm.wait(timeout_job, FINISHED, timeout=120)
    assert (job.state, job.reason, job.node) == ("TIMEOUT", "TimeLimit", slurm.node)
    assert job.signal == 15  # SIGTERM, then SIGKILL after KillWait
