"""LocalExecutor: a job just started (its exec() not finished) is running, not LOST."""

from __future__ import annotations

import signal

import pytest

from hub_ext.experiments.jobs import executors
from hub_ext.experiments.jobs.executors import LocalExecutor
from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.store import Job


def make_job(tmp_path, name: str = "j1") -> Job:
    work = tmp_path / name
    work.mkdir()
    return Job(id=name, run_id="r", project_id=1, user="ann", group="lqcd", executor="local",
               state=JobState.QUEUED, created=0, workdir=str(work))  # fmt: skip


@pytest.mark.parametrize(
    ("seen", "alive"),
    [
        ((b"bash\0-c\0...\0lh-job\0WORK/job.sh\0", "S", 4242), True),
        ((b"", "R", 4242), True),  # inside exec(): argv not visible yet
        ((b"", "Z", 4242), False),  # ended, not reaped
        ((b"", "S", 0), False),  # a kernel thread on a reused pid
        ((b"python\0other.py\0", "S", 4242), False),  # a reused pid, another program
        (None, False),  # no such process
    ],
)
def test_alive_from_proc(tmp_path, monkeypatch, seen, alive):
    job = make_job(tmp_path)
    (tmp_path / "j1" / "pid").write_text("4242")
    if seen is not None and b"WORK" in seen[0]:
        seen = (seen[0].replace(b"WORK", job.workdir.encode()), *seen[1:])
    monkeypatch.setattr(executors, "proc_view", lambda pid: seen if pid == 4242 else None)
    assert LocalExecutor()._alive(job) is alive


async def test_jobs_observed_right_after_start_are_running(tmp_path):
    # Popen returns while the kernel may still be in exec(), with an empty cmdline: the
    # poll that starts a job observes it at once and used to call it LOST (1 in 4 here).
    executor = LocalExecutor(max_concurrent=1)
    script = tmp_path / "job.sh"
    script.write_text("sleep 5\n")
    states = []
    for i in range(40):
        job = make_job(tmp_path, f"j{i}")
        await executor.submit(job, script)
        states.append((await executor.poll([job]))[job.id].state)
        executor._signal(job, signal.SIGKILL)
    assert set(states) == {JobState.RUNNING}, states
