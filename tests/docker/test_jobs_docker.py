"""The ``docker`` job executor against the real engine and the real single-user image.

Each test writes a tiny ``job.sh`` into a job directory of its own and drives the executor
directly (submit, poll, cancel), as the job manager does. Every container carries this run's
hub id and is removed at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from hub_ext.experiments.jobs.docker_executor import DockerExecutor
from hub_ext.experiments.jobs.docker_states import HUB
from hub_ext.experiments.jobs.executors import Observed
from hub_ext.experiments.jobs.states import JobState, is_terminal
from hub_ext.experiments.jobs.store import Job

from .conftest import IMAGE

pytestmark = pytest.mark.docker

#: Generous: the engine may be slow on a loaded machine. Tests never assert durations.
WAIT_S = 60


@pytest.fixture
def hub_id() -> str:
    return f"t{secrets.token_hex(4)}"


@pytest.fixture
def make_executor(
    docker_client: docker.DockerClient, test_network: tuple[str, str], hub_id: str, tmp_path: Path
) -> Iterator[Callable[..., DockerExecutor]]:
    made: list[DockerExecutor] = []

    def factory(**kwargs) -> DockerExecutor:
        options = {
            "image_for": lambda job: IMAGE,
            "network": test_network[0],
            "client_factory": lambda: docker.from_env(timeout=60),
            "hub_id": hub_id,
            "labels": {"org.latticehub.test": "1"},
            "kill_grace_s": 1.0,
            "state_dir": tmp_path / "state",
            **kwargs,
        }
        executor = DockerExecutor(**options)
        made.append(executor)
        return executor

    yield factory
    for executor in made:
        executor.close()
    for container in docker_client.containers.list(all=True, filters={"label": f"{HUB}={hub_id}"}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


async def submit(executor: DockerExecutor, job: Job) -> Job:
    external = await executor.submit(job, Path(job.workdir) / "job.sh")
    return Job(**{**job.__dict__, "external_id": external})


async def wait_for(
    executor: DockerExecutor, job: Job, until: Callable[[Observed], bool]
) -> Observed:
    """Poll as the manager does until ``until(observed)``; fail with the last state seen."""
    deadline = time.monotonic() + WAIT_S
    seen = None
    while time.monotonic() < deadline:
        seen = (await executor.poll([job])).get(job.id)
        if seen is not None and until(seen):
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job.id} never got there; last seen {seen}")


def ended(seen: Observed) -> bool:
    return is_terminal(seen.state)


def running(seen: Observed) -> bool:
    return seen.state == JobState.RUNNING


async def test_exit_zero_finishes(make_executor, make_job):
    executor = make_executor()
    job = await submit(executor, make_job("echo hello from the job"))
    seen = await wait_for(executor, job, ended)
    assert (seen.state, seen.reason, seen.exit_code) == (JobState.FINISHED, "completed", 0)
    assert seen.node
    assert (Path(job.workdir) / "stdout.log").read_text() == "hello from the job\n"


async def test_exit_code_fails_with_stderr(make_executor, make_job):
    executor = make_executor()
    job = await submit(executor, make_job("echo 'it broke' >&2\nexit 3"))
    seen = await wait_for(executor, job, ended)
    assert (seen.state, seen.reason, seen.exit_code) == (JobState.FAILED, "exit code 3", 3)
    assert "it broke" in (Path(job.workdir) / "stderr.log").read_text()


async def test_memory_hog_is_out_of_memory(make_executor, make_job):
    executor = make_executor()
    hog = "python -c 'x = b\"x\" * (200 << 20); print(len(x))'"
    job = await submit(executor, make_job(hog, mem_mb=64))
    seen = await wait_for(executor, job, ended)
    assert seen.state == JobState.FAILED
    assert seen.reason.startswith("OUT_OF_MEMORY: the job exceeded its memory limit of 64 MB")
    assert (Path(job.workdir) / "stdout.log").read_text() == ""


async def test_time_limit_is_timeout(make_executor, make_job):
    executor = make_executor()
    job = await submit(executor, make_job("sleep 60", time_s=2))
    seen = await wait_for(executor, job, ended)
    assert seen.state == JobState.FAILED
    assert seen.reason.startswith("TIMEOUT: the job reached its time limit of 2 s")


async def test_cancel_kills(make_executor, make_job):
    executor = make_executor()
    job = await submit(executor, make_job("sleep 60"))
    await wait_for(executor, job, running)
    await executor.cancel(job)
    seen = await wait_for(executor, job, ended)
    assert (seen.state, seen.reason) == (JobState.KILLED, "CANCELLED")


PROBE = r"""
echo "uid=$(id -u) gid=$(id -g)"
grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status
if touch /usr/probe 2>/dev/null; then echo root=rw; else echo root=ro; fi
touch /tmp/probe "$HOME/probe" /job/probe && echo scratch=ok
if [ -e /var/run/docker.sock ] || [ -e /run/docker.sock ]; then echo sock=yes; else echo sock=no; fi
echo "pids_max=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
echo "--- env"
env
"""


async def test_job_runs_confined_as_the_mapped_uid(
    make_executor, make_job, docker_client, monkeypatch
):
    monkeypatch.setenv("LH_SERVICE_SECRET_MARKER", "do-not-leak")
    executor = make_executor(uid_for=lambda user: (4321, 100), pids_limit=77)
    job = await submit(executor, make_job(PROBE, mem_mb=128, cpus=1))
    work = Path(job.workdir)
    st = work.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 100, 0o700)
    await wait_for(executor, job, running)
    info = docker_client.api.inspect_container(job.external_id)
    seen = await wait_for(executor, job, ended)
    out = (work / "stdout.log").read_text()
    assert seen.state == JobState.FINISHED, (out, (work / "stderr.log").read_text())
    facts, env = out.split("--- env\n")
    assert "uid=4321 gid=100" in facts
    assert "CapEff:\t0000000000000000" in facts and "CapBnd:\t0000000000000000" in facts
    assert "NoNewPrivs:\t1" in facts
    assert "root=ro" in facts and "scratch=ok" in facts and "sock=no" in facts
    assert "pids_max=77" in facts
    assert "LH_SERVICE_SECRET_MARKER" not in env and "do-not-leak" not in env
    assert "HOME=/home/jovyan" in env.splitlines()
    host = info["HostConfig"]
    assert host["Privileged"] is False and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Memory"] == host["MemorySwap"] == 128 * 2**20
    assert host["NanoCpus"] == 10**9 and host["PidsLimit"] == 77
    assert [(m["Source"], m["Destination"]) for m in info["Mounts"]] == [(str(work), "/job")]
    assert info["Config"]["User"] == "4321:100"


async def test_new_executor_reattaches_running_job(make_executor, make_job, tmp_path):
    first = make_executor()
    job = await submit(first, make_job("until [ -e /job/go ]; do sleep 0.1; done"))
    await wait_for(first, job, running)
    first.close()  # the service stops; the container keeps running

    second = make_executor()  # same hub id and state directory: a restarted service
    seen = await wait_for(second, job, running)
    assert seen.node
    (Path(job.workdir) / "go").touch()
    seen = await wait_for(second, job, ended)
    assert (seen.state, seen.exit_code) == (JobState.FINISHED, 0)


async def test_cancel_survives_restart(make_executor, make_job):
    first = make_executor(kill_grace_s=60)
    # ignores SIGTERM: only the SIGKILL after the grace period (a later poll) ends it
    job = await submit(first, make_job("trap '' TERM\nwhile true; do sleep 0.1; done"))
    await wait_for(first, job, running)
    await first.cancel(job)
    first.close()

    second = make_executor(kill_grace_s=0)
    seen = await wait_for(second, job, ended)
    assert (seen.state, seen.reason) == (JobState.KILLED, "CANCELLED")


async def test_max_concurrent_queues_then_starts(make_executor, make_job, docker_client, hub_id):
    executor = make_executor(max_concurrent=1)
    blocker = await submit(executor, make_job("until [ -e /job/go ]; do sleep 0.1; done"))
    await wait_for(executor, blocker, running)
    waiting = await submit(executor, make_job("echo second"))
    queued = await executor.poll([blocker, waiting])
    assert queued[waiting.id].state == JobState.QUEUED
    assert "waiting for a free slot (1 docker jobs at most)" in queued[waiting.id].reason
    label = f"{HUB}={hub_id}"
    assert len(docker_client.containers.list(all=True, filters={"label": label})) == 1

    (Path(blocker.workdir) / "go").touch()
    assert (await wait_for(executor, blocker, ended)).state == JobState.FINISHED
    seen = await wait_for(executor, waiting, ended)
    assert seen.state == JobState.FINISHED
    assert (Path(waiting.workdir) / "stdout.log").read_text() == "second\n"


async def test_cancel_queued_job_never_starts(make_executor, make_job, docker_client, hub_id):
    executor = make_executor(max_concurrent=1)
    blocker = await submit(executor, make_job("sleep 60"))
    await wait_for(executor, blocker, running)
    waiting = await submit(executor, make_job("echo never"))
    await executor.cancel(waiting)
    seen = (await executor.poll([blocker, waiting]))[waiting.id]
    assert (seen.state, seen.reason) == (JobState.KILLED, "CANCELLED before it started")
    names = [
        c.name
        for c in docker_client.containers.list(all=True, filters={"label": f"{HUB}={hub_id}"})
    ]
    assert names == [executor.container_name(blocker)]


async def test_ended_container_removed_once_reported(
    make_executor, make_job, docker_client, hub_id
):
    executor = make_executor()
    job = await submit(executor, make_job("true"))
    await wait_for(executor, job, ended)
    label = f"{HUB}={hub_id}"
    assert docker_client.containers.list(all=True, filters={"label": label})
    await executor.poll([])  # the manager no longer lists the job: its outcome is recorded
    assert docker_client.containers.list(all=True, filters={"label": label}) == []


@pytest.mark.postgres
async def test_replicas_start_jobs_one_at_a_time_across_the_database(
    make_executor, make_job, docker_client, hub_id
):
    """Two replicas (executors on one engine and one PostgreSQL database) start jobs at once.

    Each lists the containers and starts jobs into the slots it saw free; without the
    admission lock both would start one (two jobs in one slot), and both pollers would start
    the other replica's jobs too (one job twice, the second failing on the name).
    """
    import sqlalchemy as sa

    from hub_ext.common.dblocks import JOB_ADMIT_KEY, AdvisoryLock
    from tests.conftest import _drop, _postgres_url

    url, (admin, db) = _postgres_url()
    engine = sa.create_engine(url)
    replicas = [make_executor(max_concurrent=1), make_executor(max_concurrent=1)]
    try:
        for replica in replicas:
            replica.admission_lock = AdvisoryLock(engine, JOB_ADMIT_KEY, "job admission")
        jobs = [make_job("sleep 60") for _ in range(4)]
        jobs = list(await asyncio.gather(*(
            submit(replicas[i % 2], job) for i, job in enumerate(jobs))))  # fmt: skip
        seen = await asyncio.gather(*(replica.poll(jobs) for replica in replicas))
        await asyncio.gather(*(r._kick_task for r in replicas if r._kick_task is not None))
        label = f"{HUB}={hub_id}"
        containers = docker_client.containers.list(all=True, filters={"label": label})
        assert len(containers) == 1, [c.name for c in containers]
        states = [s.state for view in seen for s in view.values()]
        assert JobState.FAILED not in states, seen
        assert {s.state for view in seen for s in view.values()} <= {
            JobState.QUEUED, JobState.RUNNING,
        }  # fmt: skip
    finally:
        engine.dispose()
        _drop(admin, db)
