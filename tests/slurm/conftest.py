"""Fixtures for the slurm tier: the one-node Slurm that ``scripts/services.sh`` starts.

Everything goes through Slurm's command-line tools, as latticehub does: ``sbatch --parsable`` to
submit, ONE ``squeue`` call (all states) to see many jobs, ``scancel`` to stop them. Every job a
test submits is named ``<session prefix><test name>`` and is cancelled after the test, passed or
failed, and again at the end of the session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import service_missing

# One squeue call for many jobs, all states (finished jobs stay listed for MinJobAge=3600 s).
# exit_code is the raw wait status: exit status << 8 | signal (see docs/slurm.md). Reason goes
# last because it is free text ("Nodes required for job are DOWN, DRAINED or ...").
SQUEUE_FIELDS = ("JobID", "State", "exit_code", "NodeList", "UserName", "Partition", "Reason")
SQUEUE_FORMAT = ",".join(f"{field}:|" for field in SQUEUE_FIELDS[:-1]) + ",Reason:"
SQUEUE_ARGS = ("--states=all", "--noheader", f"--Format={SQUEUE_FORMAT}")
FINISHED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}
TOOL_TIMEOUT = 20  # seconds for any one Slurm command


@dataclass(frozen=True)
class SlurmJob:
    """One row of the squeue call."""

    job_id: str
    state: str
    exit_code: int  # raw wait status
    node: str
    user: str
    partition: str
    reason: str

    @property
    def exit_status(self) -> int:
        return self.exit_code >> 8

    @property
    def signal(self) -> int:
        return self.exit_code & 0x7F


def parse_squeue(text: str) -> dict[str, SlurmJob]:
    jobs = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        job_id, state, code, node, user, partition, reason = line.split("|", 6)
        job = SlurmJob(
            job_id.strip(),
            state.strip(),
            int(code),
            node.strip(),
            user.strip(),
            partition.strip(),
            reason.strip(),
        )
        jobs[job.job_id] = job
    return jobs


def run_tool(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
    return result


class SlurmCluster:
    """The local cluster as the tests use it; every job name starts with :attr:`prefix`."""

    def __init__(self, prefix: str, workdir: str, memory_enforcement: str) -> None:
        self.prefix = prefix
        self.workdir = workdir
        self.memory_enforcement = memory_enforcement  # "cgroup" (OUT_OF_MEMORY) or "poll"
        self.node = socket.gethostname().split(".")[0]

    def sbatch(
        self, name: str, *options: str, wrap: str, as_prefix: Iterable[str] = ()
    ) -> tuple[str, float]:
        """Submit; returns (job id, seconds sbatch took). ``as_prefix``: e.g. sudo -u USER."""
        argv = [
            *as_prefix,
            "sbatch",
            "--parsable",
            f"--job-name={self.prefix}{name}",
            f"--chdir={self.workdir}",
            f"--output={self.workdir}/%x-%j.out",
            *options,
            f"--wrap={wrap}",
        ]
        started = time.monotonic()
        result = run_tool(argv)
        took = time.monotonic() - started
        job_id = result.stdout.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"
        assert job_id.isdigit(), f"sbatch --parsable printed {result.stdout!r}"
        return job_id, took

    def squeue(self, job_ids: Iterable[str] = ()) -> dict[str, SlurmJob]:
        """ONE squeue call: every job (or just ``job_ids``), any state."""
        ids = ",".join(job_ids)
        argv = ["squeue", *SQUEUE_ARGS] + ([f"--jobs={ids}"] if ids else [])
        return parse_squeue(run_tool(argv).stdout)

    def wait(
        self,
        job_id: str,
        until: Iterable[str] = FINISHED,
        timeout: float = 30,
        reason: str | None = None,
    ) -> SlurmJob:
        """Poll squeue (bounded) until the job's state is in ``until`` (and has ``reason``)."""
        wanted = set(until)
        deadline = time.monotonic() + timeout
        job = None
        while time.monotonic() < deadline:
            job = self.squeue([job_id]).get(job_id)
            if job is not None and job.state in wanted and reason in (None, job.reason):
                return job
            time.sleep(0.25)
        raise AssertionError(
            f"job {job_id} not in {sorted(wanted)} (reason {reason}) after {timeout}s: {job}"
        )

    def output(self, name: str, job_id: str) -> str:
        with open(f"{self.workdir}/{self.prefix}{name}-{job_id}.out") as f:
            return f.read()

    def child(self, tag: str) -> SlurmCluster:
        """The same cluster with job names ``<prefix><tag>-...`` (cancelled on their own)."""
        return SlurmCluster(f"{self.prefix}{tag}-", self.workdir, self.memory_enforcement)

    def cancel(self) -> None:
        """scancel every unfinished job whose name starts with :attr:`prefix` (any user's)."""
        listing = run_tool(["squeue", "--noheader", "--format=%i|%j"], check=False).stdout
        ids = [
            job_id
            for job_id, _, name in (line.partition("|") for line in listing.splitlines())
            if name.startswith(self.prefix)
        ]
        if ids:
            run_tool(["scancel", *ids], check=False)


def _memory_enforcement() -> str:
    config = run_tool(["scontrol", "show", "config"]).stdout
    task = next((line for line in config.splitlines() if line.startswith("TaskPlugin ")), "")
    return "cgroup" if "task/cgroup" in task else "poll"


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """The running cluster (skipped, or failed with LATTICEHUB_REQUIRE_SERVICES=1, if absent)."""
    fix = "run scripts/services.sh start (as root)"
    if not shutil.which("sbatch"):
        service_missing("Slurm (no sbatch on PATH)", "apt-get install slurm-wlm; " + fix)
    try:
        ping = run_tool(["scontrol", "ping"], check=False)
        nodes = run_tool(["sinfo", "--noheader", "--Node", "--format=%N %T"], check=False)
    except subprocess.TimeoutExpired:
        service_missing("Slurm (scontrol/sinfo time out)", fix)
    if "is UP" not in ping.stdout:
        service_missing(f"slurmctld ({ping.stdout.strip() or ping.stderr.strip()})", fix)
    states = dict(line.split() for line in nodes.stdout.splitlines() if line.strip())
    if not any(state in {"idle", "mixed", "allocated"} for state in states.values()):
        service_missing(f"an idle Slurm node (sinfo: {states or nodes.stderr.strip()})", fix)
    workdir = tempfile.mkdtemp(prefix="lh-slurm-", dir="/tmp")
    os.chmod(workdir, 0o1777)  # jobs run as other users write their output here
    cluster = SlurmCluster(f"lhtest-{uuid.uuid4().hex[:6]}-", workdir, _memory_enforcement())
    try:
        yield cluster
    finally:
        cluster.cancel()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def jobs(slurm: SlurmCluster, request: pytest.FixtureRequest) -> Iterator[SlurmCluster]:
    """The cluster for one test: its unfinished jobs are cancelled afterwards, pass or fail."""
    cluster = slurm.child(request.node.name.removeprefix("test_")[:24])
    try:
        yield cluster
    finally:
        cluster.cancel()
