"""The ``docker`` job executor on a Swarm, against the real engine and the single-user image.

A single-node Swarm is made for this module (and left after) when the engine is not in one.
Each test writes a tiny ``job.sh`` into a job directory of its own and drives the executor
directly (submit, poll, cancel), as the job manager does. Jobs have no network (``network=""``).
Every service carries this test's hub id and is removed at teardown.
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

from hub_ext.experiments.jobs.docker_states import HUB, JOB
from hub_ext.experiments.jobs.executors import Observed
from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.store import Job
from hub_ext.experiments.jobs.swarm_executor import SwarmJobExecutor
from hub_ext.experiments.jobs.swarm_states import ENDED

from .conftest import IMAGE
from .test_jobs_docker import ended, running, submit

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

#: Generous: Swarm (and its registry look-up of the image) may be slow. Never assert durations.
WAIT_S = 90
#: Once Swarm has stopped a task, the manager must see the outcome within a few polls.
SETTLED_S = 15
#: Swarm's task reaper deletes the stopped task of a scaled-down service soon after it stops.
REAP_S = 3


@pytest.fixture
def hub_id() -> str:
    return f"t{secrets.token_hex(4)}"


def services_of(client: docker.DockerClient, hub_id: str) -> list:
    return client.services.list(filters={"label": f"{HUB}={hub_id}"})


@pytest.fixture
def make_executor(
    docker_client: docker.DockerClient, swarm_node: str, hub_id: str, tmp_path: Path
) -> Iterator[Callable[..., SwarmJobExecutor]]:
    made: list[SwarmJobExecutor] = []

    def factory(**kwargs) -> SwarmJobExecutor:
        options = {
            "image_for": lambda job: IMAGE,
            "network": "",
            "client_factory": lambda: docker.from_env(timeout=60),
            "hub_id": hub_id,
            "labels": {"org.latticehub.test": "1"},
            "kill_grace_s": 1.0,
            "state_dir": tmp_path / "state",
            **kwargs,
        }
        executor = SwarmJobExecutor(**options)
        made.append(executor)
        return executor

    yield factory
    for executor in made:
        executor.close()
    for service in services_of(docker_client, hub_id):
        with contextlib.suppress(docker.errors.APIError):
            service.remove()


async def wait_for(
    executor: SwarmJobExecutor,
    job: Job,
    until: Callable[[Observed], bool],
    within: float = WAIT_S,
) -> Observed:
    """Poll as the manager does until ``until(observed)``; fail with the last state seen."""
    deadline = time.monotonic() + within
    seen = None
    while time.monotonic() < deadline:
        seen = (await executor.poll([job])).get(job.id)
        if seen is not None and until(seen):
            return seen
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {job.id} never got there; last seen {seen}")


def outputs(job: Job) -> str:
    work = Path(job.workdir)
    parts = []
    for name in ("stdout.log", "stderr.log"):
        with contextlib.suppress(OSError):
            parts.append(f"--- {name}\n{(work / name).read_text()}")
    return "\n".join(parts)


def the_task(client: docker.DockerClient, service: str) -> dict:
    (task,) = client.api.tasks(filters={"service": service})
    return task


async def swarm_stopped(client: docker.DockerClient, service: str) -> None:
    """Wait until Swarm has stopped the service's task (or deleted it), then for its reaper.

    The manager polls every couple of seconds: whatever Swarm does with the stopped task
    meanwhile, the next polls must report the job's outcome.
    """
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        tasks = client.api.tasks(filters={"service": service})
        if all(t["Status"]["State"] in ENDED for t in tasks):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"Swarm never stopped {service}: {tasks}")
    await asyncio.sleep(REAP_S)


# -- outcomes --------------------------------------------------------------------------------
async def test_exit_zero_finishes_on_the_swarm_node(make_executor, make_job, swarm_node):
    executor = make_executor()
    job = await submit(executor, make_job("echo hello from the job"))
    assert job.external_id == executor.container_name(job)
    seen = await wait_for(executor, job, ended)
    assert (seen.state, seen.reason, seen.exit_code) == (JobState.FINISHED, "completed", 0), (
        outputs(job)
    )
    assert seen.node == swarm_node
    assert (Path(job.workdir) / "stdout.log").read_text() == "hello from the job\n"


async def test_exit_code_fails_with_that_code(make_executor, make_job, swarm_node):
    executor = make_executor()
    job = await submit(executor, make_job("echo 'it broke' >&2\nexit 3"))
    seen = await wait_for(executor, job, ended)
    assert (seen.state, seen.reason, seen.exit_code) == (JobState.FAILED, "exit code 3", 3)
    assert seen.node == swarm_node
    assert "it broke" in (Path(job.workdir) / "stderr.log").read_text()


async def test_memory_hog_is_out_of_memory(make_executor, make_job, docker_client):
    executor = make_executor()
    hog = "python -c 'x = b\"x\" * (1 << 30); print(len(x))'"
    job = await submit(executor, make_job(hog, mem_mb=64))
    seen = await wait_for(executor, job, ended)
    assert seen.state == JobState.FAILED, outputs(job)
    assert seen.exit_code == 137
    # the task ran on this executor's own node: the container's OOM flag was read
    assert seen.reason.startswith("OUT_OF_MEMORY: the job exceeded its memory limit of 64 MB")
    assert (Path(job.workdir) / "stdout.log").read_text() == ""
    task = the_task(docker_client, executor.container_name(job))
    container = docker_client.api.inspect_container(
        task["Status"]["ContainerStatus"]["ContainerID"]
    )
    assert container["State"]["OOMKilled"] is True
    assert container["HostConfig"]["Memory"] == 64 * 2**20


async def test_rejected_task_fails_with_swarms_error(make_executor, make_job, swarm_node):
    """The image is gone from the node when Swarm starts the task: Swarm rejects the task."""
    images = iter([IMAGE])  # submit checks the image; the service then names one that is gone
    executor = make_executor(image_for=lambda job: next(images, "latticehub/no-such-image:gone"))
    job = await submit(executor, make_job("echo never"))
    seen = await wait_for(executor, job, ended)
    assert seen.state == JobState.FAILED, seen
    assert "No such image: latticehub/no-such-image:gone" in seen.reason
    assert not (Path(job.workdir) / "stdout.log").exists()


# -- time limit and cancel -------------------------------------------------------------------
async def test_time_limit_is_timeout(make_executor, make_job, docker_client):
    executor = make_executor()
    job = await submit(executor, make_job("sleep 60", time_s=3))
    seen = await wait_for(executor, job, lambda s: "time limit" in s.reason or ended(s))
    assert (seen.state, seen.reason) == (JobState.RUNNING, "time limit reached: stopping"), seen
    await swarm_stopped(docker_client, job.external_id)
    seen = await wait_for(executor, job, ended, within=SETTLED_S)
    assert seen.state == JobState.FAILED, seen
    assert seen.reason.startswith("TIMEOUT: the job reached its time limit of 3 s")


async def test_time_limit_scales_the_service_to_zero(make_executor, make_job, docker_client):
    executor = make_executor()
    job = await submit(executor, make_job("sleep 60", time_s=3))
    await wait_for(executor, job, lambda s: "time limit" in s.reason or ended(s))
    spec = docker_client.api.inspect_service(job.external_id)["Spec"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 0}}
    await swarm_stopped(docker_client, job.external_id)
    assert not (Path(job.workdir) / "stdout.log").read_text()


async def test_cancel_running_job_kills(make_executor, make_job, docker_client):
    executor = make_executor()
    job = await submit(executor, make_job("sleep 60"))
    await wait_for(executor, job, running)
    await executor.cancel(job)
    spec = docker_client.api.inspect_service(job.external_id)["Spec"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 0}}
    await swarm_stopped(docker_client, job.external_id)
    seen = await wait_for(executor, job, ended, within=SETTLED_S)
    assert (seen.state, seen.reason) == (JobState.KILLED, "CANCELLED"), seen


async def test_cancel_survives_restart(make_executor, make_job, docker_client):
    first = make_executor()
    job = await submit(first, make_job("sleep 60"))
    await wait_for(first, job, running)
    await first.cancel(job)
    first.close()
    await swarm_stopped(docker_client, job.external_id)

    second = make_executor()  # same hub id and state directory: a restarted service
    seen = await wait_for(second, job, ended, within=SETTLED_S)
    assert (seen.state, seen.reason) == (JobState.KILLED, "CANCELLED"), seen


async def test_warning_signal_before_the_time_limit(make_executor, make_job):
    body = (
        "#SBATCH --signal=B:USR1@28\n"
        "trap 'echo checkpoint now; exit 0' USR1\n"
        "sleep 60 & wait $!\n"
        "echo no signal came\n"
    )
    executor = make_executor()
    job = await submit(executor, make_job(body, time_s=30))
    seen = await wait_for(executor, job, ended)
    assert (seen.state, seen.exit_code) == (JobState.FINISHED, 0), (seen, outputs(job))
    assert (Path(job.workdir) / "stdout.log").read_text() == "checkpoint now\n"


# -- placement -------------------------------------------------------------------------------
async def test_job_too_big_for_any_node_stays_queued(make_executor, make_job, docker_client):
    host_mb = docker_client.info()["MemTotal"] // 2**20
    executor = make_executor()
    job = await submit(executor, make_job("echo never", mem_mb=10 * host_mb))
    seen = await wait_for(executor, job, lambda s: "insufficient resources" in s.reason or ended(s))
    assert seen.state == JobState.QUEUED, seen
    assert seen.reason.startswith("waiting for a node with room: ")
    assert "no suitable node" in seen.reason
    # Swarm keeps it waiting: still queued a moment later, and it never ran
    await asyncio.sleep(2)
    seen = (await executor.poll([job]))[job.id]
    assert seen.state == JobState.QUEUED and "insufficient resources" in seen.reason, seen
    assert not (Path(job.workdir) / "stdout.log").exists()
    (task,) = docker_client.api.tasks(filters={"service": job.external_id})
    assert task["Status"]["State"] == "pending" and not task.get("NodeID")


async def test_job_too_big_for_any_node_can_be_cancelled(make_executor, make_job, docker_client):
    host_mb = docker_client.info()["MemTotal"] // 2**20
    executor = make_executor()
    job = await submit(executor, make_job("echo never", mem_mb=10 * host_mb))
    await wait_for(executor, job, lambda s: "insufficient resources" in s.reason or ended(s))
    await executor.cancel(job)
    await swarm_stopped(docker_client, job.external_id)
    seen = await wait_for(executor, job, ended, within=SETTLED_S)
    assert seen.state == JobState.KILLED, seen
    assert seen.reason.startswith("CANCELLED")
    assert not (Path(job.workdir) / "stdout.log").exists()


# -- confinement -----------------------------------------------------------------------------
PROBE = r"""
echo "uid=$(id -u) gid=$(id -g)"
grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status
if touch /usr/x 2>/dev/null; then echo root=rw; else echo root=ro; fi
touch /tmp/probe /job/probe && echo scratch=ok
if [ -e /var/run/docker.sock ] || [ -e /run/docker.sock ]; then echo sock=yes; else echo sock=no; fi
echo "pids_max=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max)"
echo "pid1=$(tr '\0' ' ' </proc/1/cmdline)"
echo "--- env"
env
"""


async def test_job_runs_confined_as_the_mapped_uid(
    make_executor, make_job, docker_client, swarm_node, monkeypatch
):
    monkeypatch.setenv("LH_SERVICE_SECRET_MARKER", "do-not-leak")
    executor = make_executor(uid_for=lambda user: (4321, 100), pids_limit=77)
    body = PROBE + "until [ -e /job/go ]; do sleep 0.1; done"
    job = await submit(executor, make_job(body, mem_mb=128, cpus=1))
    work = Path(job.workdir)
    st = work.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 100, 0o700)
    await wait_for(executor, job, running)

    spec = docker_client.api.inspect_service(job.external_id)["Spec"]
    template = spec["TaskTemplate"]
    resources = template["Resources"]
    assert resources["Limits"] == {"MemoryBytes": 128 * 2**20, "NanoCPUs": 10**9, "Pids": 77}
    assert resources["Reservations"] == {"MemoryBytes": 128 * 2**20, "NanoCPUs": 10**9}
    assert template["RestartPolicy"]["Condition"] == "none"
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert not template.get("Networks")
    cs = template["ContainerSpec"]
    assert cs["User"] == "4321:100"
    assert cs["ReadOnly"] is True and cs["Init"] is True
    assert cs["CapabilityDrop"] == ["ALL"]
    assert cs["Command"][:2] == ["setpriv", "--no-new-privs"]
    binds = [(m["Source"], m["Target"]) for m in cs["Mounts"] if m["Type"] == "bind"]
    assert binds == [(str(work), "/job")]
    assert spec["Labels"][HUB] == executor.hub_id and spec["Labels"][JOB] == job.id
    assert spec["Labels"]["org.latticehub.test"] == "1" and cs["Labels"][JOB] == job.id

    task = the_task(docker_client, job.external_id)
    info = docker_client.api.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
    host = info["HostConfig"]
    assert host["Privileged"] is False and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and host["Init"] is True
    assert host["Memory"] == 128 * 2**20 and host["NanoCpus"] == 10**9
    assert host["PidsLimit"] == 77
    assert info["Config"]["User"] == "4321:100"

    (work / "go").touch()
    seen = await wait_for(executor, job, ended)
    out = (work / "stdout.log").read_text()
    assert seen.state == JobState.FINISHED, outputs(job)
    assert seen.node == swarm_node
    facts, env = out.split("--- env\n")
    assert "uid=4321 gid=100" in facts
    assert "CapEff:\t0000000000000000" in facts and "CapBnd:\t0000000000000000" in facts
    assert "NoNewPrivs:\t1" in facts
    assert "root=ro" in facts and "scratch=ok" in facts and "sock=no" in facts
    assert "pids_max=77" in facts
    assert "setpriv --no-new-privs bash" in facts and "pid1=/sbin/docker-init" in facts, facts
    assert "LH_SERVICE_SECRET_MARKER" not in env and "do-not-leak" not in env
    assert "HOME=/tmp/home" in env.splitlines()


async def test_default_uid_is_1000(make_executor, make_job):
    executor = make_executor()
    job = await submit(executor, make_job("id -u; id -g"))
    seen = await wait_for(executor, job, ended)
    assert seen.state == JobState.FINISHED, outputs(job)
    assert (Path(job.workdir) / "stdout.log").read_text() == "1000\n100\n"


@pytest.mark.parametrize("uid", [1000, 4321])
async def test_home_is_writable_by_the_job(make_executor, make_job, uid):
    executor = make_executor(uid_for=lambda user: (uid, 100))
    job = await submit(executor, make_job('touch "$HOME/probe" && echo home=ok'))
    seen = await wait_for(executor, job, ended)
    assert seen.state == JobState.FINISHED, outputs(job)
    assert (Path(job.workdir) / "stdout.log").read_text() == "home=ok\n"


# -- restarts and clean-up -------------------------------------------------------------------
async def test_new_executor_reattaches_running_job(
    make_executor, make_job, docker_client, hub_id, swarm_node
):
    first = make_executor()
    job = await submit(first, make_job("until [ -e /job/go ]; do sleep 0.1; done"))
    await wait_for(first, job, running)
    first.close()  # the executor goes; its Swarm service keeps running

    second = make_executor()  # same hub id and state directory: a restarted service
    seen = await wait_for(second, job, running)
    assert seen.node == swarm_node
    assert [s.name for s in services_of(docker_client, hub_id)] == [second.container_name(job)]
    (Path(job.workdir) / "go").touch()
    seen = await wait_for(second, job, ended)
    assert (seen.state, seen.exit_code) == (JobState.FINISHED, 0)


async def test_ended_service_removed_once_reported(
    make_executor, make_job, docker_client, hub_id, tmp_path
):
    executor = make_executor()
    job = await submit(executor, make_job("true"))
    await wait_for(executor, job, ended)
    assert [s.name for s in services_of(docker_client, hub_id)] == [executor.container_name(job)]
    assert (tmp_path / "state" / f"{job.id}.started").exists()

    await executor.poll([job])  # still active (its outcome not yet recorded): it stays
    assert services_of(docker_client, hub_id)

    await executor.poll([])  # the manager no longer lists the job: its outcome is recorded
    assert services_of(docker_client, hub_id) == []
    assert not (tmp_path / "state" / f"{job.id}.started").exists()


async def test_live_service_not_removed_when_unlisted(
    make_executor, make_job, docker_client, hub_id
):
    executor = make_executor()
    job = await submit(executor, make_job("until [ -e /job/go ]; do sleep 0.1; done"))
    await wait_for(executor, job, running)
    await executor.poll([])  # a live task is never removed, listed or not
    assert [s.name for s in services_of(docker_client, hub_id)] == [executor.container_name(job)]
    (Path(job.workdir) / "go").touch()
    assert (await wait_for(executor, job, ended)).state == JobState.FINISHED


async def test_cancelled_service_removed_once_reported(
    make_executor, make_job, docker_client, hub_id
):
    executor = make_executor()
    job = await submit(executor, make_job("sleep 60"))
    await wait_for(executor, job, running)
    await executor.cancel(job)
    await swarm_stopped(docker_client, job.external_id)
    await wait_for(executor, job, ended, within=SETTLED_S)
    await executor.poll([])
    assert services_of(docker_client, hub_id) == []
