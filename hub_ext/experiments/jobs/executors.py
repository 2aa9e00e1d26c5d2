"""Where jobs run: the ``local`` executor (subprocesses) and Slurm, behind one interface.

Both run the same rendered batch script (for ``local`` the ``#SBATCH`` lines are comments). All
process execution goes through a ``run_command`` seam so Slurm's tools can be scripted in tests.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .states import (
    JobState,
    SlurmStatus,
    exit_code_of,
    map_state,
    parse_sbatch_parsable,
    parse_squeue,
)
from .store import Job


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    returncode: int
    stdout: str
    stderr: str


RunCommand = Callable[[Sequence[str]], Awaitable[CommandResult]]


#: The search path every job and batch tool starts with (nothing from the service's).
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Service variables a batch tool may see: where Slurm's configuration is, nothing secret.
TOOL_PASSTHROUGH = ("SLURM_CONF",)


def job_environment(home: str) -> dict[str, str]:
    """The whole environment a job's process starts with.

    The job's own variables come from its 0600 environment file; nothing of the service's
    (its Hub token, its database URL) is in it.
    """
    return {"PATH": JOB_PATH, "HOME": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def tool_environment() -> dict[str, str]:
    """The environment of ``sbatch``/``squeue``/``scancel``: an allow-list, never the service's."""
    env = {"PATH": JOB_PATH, "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in TOOL_PASSTHROUGH if k in os.environ})
    return env


async def run_command(
    argv: Sequence[str], timeout: float = 30, env: dict[str, str] | None = None
) -> CommandResult:
    """Run ``argv`` without a shell; a command that hangs is killed after ``timeout`` s.

    ``env`` is the command's whole environment (default: :func:`tool_environment`).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=tool_environment() if env is None else env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return CommandResult(124, "", f"{argv[0]} did not answer within {timeout} s")
    return CommandResult(
        proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
    )


@dataclass(frozen=True)
class Observed:
    """An executor's view of one job at a poll."""

    state: JobState
    reason: str
    node: str = ""
    exit_code: int | None = None


class ExecutorError(RuntimeError):
    """Submitting or cancelling failed; the message is shown to the user."""


class Executor(abc.ABC):
    """Runs batch scripts and reports their state."""

    name: str = ""
    #: where the job sees its directory (``/job`` in a container); None: its host path
    job_root: str | None = None
    #: the job's Python interpreter (None: the manager's)
    job_python: str | None = None
    #: the tracking service's URL as the job sees it (None: the manager's)
    tracking_url: str | None = None

    def job_exports(self, job: Job) -> tuple[tuple[str, str], ...]:
        """Variables this executor's jobs need exported by the script (besides the job's)."""
        return ()

    def job_owner(self, job: Job) -> tuple[int, int] | None:
        """``(uid, gid)`` that must own the job's directory (None: leave it as it is)."""
        return None

    @abc.abstractmethod
    async def submit(self, job: Job, script: Path) -> str:
        """Start or queue the script for ``job``; return the executor's id for it."""

    @abc.abstractmethod
    async def poll(self, jobs: Sequence[Job]) -> dict[str, Observed]:
        """States of the given active jobs (one query for all), keyed by job id."""

    @abc.abstractmethod
    async def cancel(self, job: Job) -> None:
        """Stop the job (a no-op for one that has ended)."""


# -- local -----------------------------------------------------------------------------------
#: Runs the job script, forwards SIGTERM to it, and records its exit status atomically.
WRAPPER = """
bash "$1" >>"$2" 2>>"$3" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"; rc=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
echo "$rc" >"$4.tmp" && mv "$4.tmp" "$4"
"""


def _marker_state(text: str) -> JobState:
    return JobState.FAILED if text.startswith(("TIMEOUT", "OUT_OF_MEMORY")) else JobState.KILLED


def session_rss_mb(sid: int) -> float:
    """Resident memory of every process in session ``sid`` (the job's wrapper and children)."""
    total_pages = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # after "pid (comm)": state ppid pgrp session ... rss is field 24 of stat
        if int(fields[3]) == sid:
            total_pages += int(fields[21])
    return total_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def proc_view(pid: int) -> tuple[bytes, str, int] | None:
    """``(cmdline, state, session id)`` of a process from /proc, or None if there is none."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after "pid (comm)": state ppid pgrp session ...
    return cmdline, fields[0].decode(), int(fields[3])


class LocalExecutor(Executor):
    """Jobs as process groups on this host, at most ``max_concurrent`` at a time.

    Each job's directory gets ``pid`` when it starts and ``exitcode`` when it ends (written by
    a small shell wrapper in the job's own session), so a restarted service re-attaches to
    running jobs and reads the outcome of jobs that ended while it was down; a job whose
    process vanished without an exit code is LOST, never forgotten. Time limits are enforced
    here (SIGTERM, then SIGKILL after ``kill_grace_s``), and so is memory: at each poll the
    resident memory of the job's session is summed and a job over its ``mem`` is killed
    (OUT_OF_MEMORY), as Slurm's accounting-based enforcement does. CPU use is bounded by
    ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set to the job's ``cpus``.
    """

    name = "local"

    def __init__(self, max_concurrent: int = 2, kill_grace_s: float = 10.0):
        self.max_concurrent = max_concurrent
        self.kill_grace_s = kill_grace_s
        self._waiting: dict[str, tuple[Job, Path]] = {}

    @staticmethod
    def _files(job: Job) -> tuple[Path, Path, Path]:
        work = Path(job.workdir)
        return work / "pid", work / "exitcode", work / "cancelled"

    def _running(self, jobs: Sequence[Job]) -> int:
        return sum(1 for j in jobs if self._alive(j))

    def _alive(self, job: Job) -> bool:
        pid_file, exit_file, _ = self._files(job)
        if not pid_file.exists() or exit_file.exists():
            return False
        pid = int(pid_file.read_text().strip() or 0)
        seen = proc_view(pid)
        if seen is None:
            return False
        cmdline, state, session = seen
        if not cmdline:
            # Just started: Popen returns while the kernel is still inside exec(), before
            # the new argv is visible. The wrapper leads its own session; a zombie (or a
            # kernel thread on a reused pid) is not this job.
            return state not in ("Z", "X") and session == pid
        # A reused pid belongs to some other program: it does not name this job's script.
        return job.workdir.encode() in cmdline

    async def submit(self, job: Job, script: Path) -> str:  # noqa: D102
        self._waiting[job.id] = (job, script)
        return f"local-{job.id}"

    def _start(self, job: Job, script: Path) -> None:
        pid_file, exit_file, _ = self._files(job)
        work = Path(job.workdir)
        wrapper = WRAPPER
        pid = _spawn_detached(
            [
                "bash",
                "-c",
                wrapper,
                "lh-job",
                str(script),
                str(work / "stdout.log"),
                str(work / "stderr.log"),
                str(exit_file),
            ],  # fmt: skip
            cwd=work,
            env=job_environment(str(work)),
        )
        pid_file.write_text(str(pid))

    async def poll(self, jobs: Sequence[Job]) -> dict[str, Observed]:  # noqa: D102
        running = self._running(jobs)
        for job_id, (job, script) in list(self._waiting.items()):
            if running >= self.max_concurrent:
                break
            self._start(job, script)
            del self._waiting[job_id]
            running += 1
        now = time.time()
        observed: dict[str, Observed] = {}
        for job in jobs:
            observed[job.id] = self._observe(job, now)
        return observed

    def _observe(self, job: Job, now: float) -> Observed:
        pid_file, exit_file, cancelled = self._files(job)
        if job.id in self._waiting:
            return Observed(
                JobState.QUEUED, f"waiting for a free local slot ({self.max_concurrent} max)"
            )
        if exit_file.exists():
            code = int(exit_file.read_text().strip() or 1)
            if cancelled.exists():
                text = cancelled.read_text().strip()
                return Observed(_marker_state(text), text, exit_code=code)
            if code == 0:
                return Observed(JobState.FINISHED, "completed", exit_code=0)
            return Observed(JobState.FAILED, f"exit code {code}", exit_code=code)
        if not pid_file.exists() and cancelled.exists():
            return Observed(JobState.KILLED, f"{cancelled.read_text().strip()} before it started")
        if not pid_file.exists():
            return Observed(
                JobState.LOST,
                "the job was queued on the local executor but never started (service restarted)",
            )
        if not self._alive(job) and cancelled.exists():
            text = cancelled.read_text().strip()
            return Observed(_marker_state(text), f"{text} (killed)")
        if not self._alive(job):
            return Observed(
                JobState.LOST, "the job's process ended without an exit status (host restarted?)"
            )
        limit = float(job.resources.get("time_s") or 0)
        started = (job.started or 0) / 1000 or pid_file.stat().st_mtime
        if limit and now - started > limit and not cancelled.exists():
            cancelled.write_text("TIMEOUT: the job reached its time limit")
            self._signal(job, signal.SIGTERM)
            asyncio.get_event_loop().call_later(
                self.kill_grace_s, self._signal, job, signal.SIGKILL
            )
            return Observed(JobState.RUNNING, "time limit reached: stopping", node="localhost")
        mem_mb = float(job.resources.get("mem_mb") or 0)
        used = session_rss_mb(int(pid_file.read_text())) if mem_mb else 0.0
        if mem_mb and used > mem_mb:
            # As Slurm's memory enforcement does: kill at once, the job cannot checkpoint.
            cancelled.write_text(
                f"OUT_OF_MEMORY: the job used {used:.0f} MB, over its limit of {mem_mb:.0f} MB "
                "(ask for more mem)"
            )
            self._signal(job, signal.SIGKILL)
            return Observed(JobState.RUNNING, "memory limit exceeded: stopping", node="localhost")
        return Observed(JobState.RUNNING, "running on localhost", node="localhost")

    def _signal(self, job: Job, sig: int) -> None:
        # SIGTERM to the wrapper, which passes it on and records the exit status; SIGKILL
        # to the whole process group when the job ignores SIGTERM past the grace period.
        pid_file = self._files(job)[0]
        if not self._alive(job):
            return
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(pid, sig) if sig == signal.SIGKILL else os.kill(pid, sig)

    async def cancel(self, job: Job, reason: str = "CANCELLED") -> None:  # noqa: D102
        cancelled = self._files(job)[2]
        cancelled.write_text(reason)
        if self._waiting.pop(job.id, None) is not None:
            return
        self._signal(job, signal.SIGTERM)
        asyncio.get_event_loop().call_later(self.kill_grace_s, self._signal, job, signal.SIGKILL)


def _spawn_detached(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Start ``argv`` in its own session (it outlives the service); return its pid.

    ``env`` is its whole environment: nothing of the service's is inherited.
    """
    import subprocess

    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Reap it when it ends while we run; after a restart the exit code file tells the outcome.
    asyncio.get_event_loop().run_in_executor(None, proc.wait)
    return proc.pid


# -- Slurm -----------------------------------------------------------------------------------
class SlurmExecutor(Executor):
    """``sbatch --parsable`` to submit, one ``squeue`` per poll for every job, ``scancel``.

    Args:
        command_prefix: argv prefix to act as the user, with ``{username}`` replaced (the
            batchspawner convention), e.g. ``["sudo", "-E", "-u", "{username}"]``; empty
            submits as the service account.
        run: the ``run_command`` seam.
        missing_polls: polls a job may be absent from ``squeue`` before it is LOST.
        system_user: Hub user name -> the user's account on the cluster (identity by default).
    """

    name = "slurm"

    def __init__(
        self,
        command_prefix: Sequence[str] = (),
        run: RunCommand = run_command,
        missing_polls: int = 3,
        system_user: Callable[[str], str] = str,
    ):
        self.command_prefix = list(command_prefix)
        self.system_user = system_user
        self.run = run
        self.missing_polls = missing_polls
        self._missing: dict[str, int] = {}
        self.last_statuses: dict[str, SlurmStatus] = {}

    def _as_user(self, user: str, argv: list[str]) -> list[str]:
        account = self.system_user(user)
        return [part.replace("{username}", account) for part in self.command_prefix] + argv

    def job_exports(self, job: Job) -> tuple[tuple[str, str], ...]:
        """``--export=NONE`` gives the script no search path of the submitter's: set one."""
        return (("PATH", JOB_PATH),)

    async def submit(self, job: Job, script: Path) -> str:  # noqa: D102
        result = await self.run(self._as_user(job.user, ["sbatch", "--parsable", str(script)]))
        if result.returncode != 0:
            raise ExecutorError(
                f"sbatch refused the job: {result.stderr.strip() or result.stdout.strip()}"
            )
        return parse_sbatch_parsable(result.stdout)

    async def poll(self, jobs: Sequence[Job]) -> dict[str, Observed]:  # noqa: D102
        if not jobs:
            return {}
        result = await self.run(squeue_command())
        if result.returncode != 0:
            raise ExecutorError(f"squeue failed: {result.stderr.strip()}")
        statuses = parse_squeue(result.stdout)
        self.last_statuses = statuses
        observed: dict[str, Observed] = {}
        for job in jobs:
            status = statuses.get(job.external_id or "")
            if status is None:
                misses = self._missing.get(job.id, 0) + 1
                self._missing[job.id] = misses
                if misses >= self.missing_polls:
                    observed[job.id] = Observed(
                        JobState.LOST, f"Slurm no longer knows job {job.external_id}"
                    )
                continue
            self._missing.pop(job.id, None)
            state, reason = map_state(status)
            code = exit_code_of(status)
            observed[job.id] = Observed(state, reason, status.node, code)
        return observed

    async def cancel(self, job: Job) -> None:  # noqa: D102
        if not job.external_id:
            return
        result = await self.run(self._as_user(job.user, ["scancel", job.external_id]))
        if result.returncode != 0:
            raise ExecutorError(f"scancel failed: {result.stderr.strip()}")


def squeue_command() -> list[str]:
    """The one ``squeue`` call per poll (all states, so just-ended jobs show their outcome)."""
    from .states import SQUEUE_ARGS

    return ["squeue", *SQUEUE_ARGS]
