"""The ``docker`` executor without an engine: the state table and a scripted fake client."""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from hub_ext.experiments.jobs.docker_executor import DockerExecutor
from hub_ext.experiments.jobs.docker_states import (
    GPUS,
    HUB,
    JOB,
    TIME_S,
    WARN_S,
    observe_inspect,
    warn_seconds,
)
from hub_ext.experiments.jobs.executors import ExecutorError, Observed
from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.store import Job
from latticehub import labels as server_labels

F, K, R, Q = JobState.FAILED, JobState.KILLED, JobState.RUNNING, JobState.QUEUED
MB64 = {"Memory": 64 * 2**20}
TIMEOUT = "TIMEOUT: the job reached its time limit of 5 s"
OOM = "OUT_OF_MEMORY: the job exceeded its memory limit of 64 MB (ask for more mem)"
KILL9 = "exit code 137 (killed by SIGKILL): if you did not kill it, it ran out of its 64 MB"
STOPPING = "time limit reached: stopping"
CANCELLED = {"cancelled": "CANCELLED"}


def inspect(status: str, code: int = 0, oom: bool = False, error: str = "", host=None) -> dict:
    state = {"Status": status, "ExitCode": code, "OOMKilled": oom, "Error": error}
    return {"State": state, "HostConfig": host or {}}


@pytest.mark.parametrize(
    ("info", "markers", "want"),
    [
        (inspect("created"), {}, Observed(Q, "starting")),
        (inspect("running"), {}, Observed(R, "running on n1", "n1")),
        (inspect("paused"), {}, Observed(R, "running on n1", "n1")),
        (inspect("running"), CANCELLED, Observed(R, "cancelled: stopping", "n1")),
        (inspect("running"), {"timed_out": TIMEOUT}, Observed(R, STOPPING, "n1")),
        (inspect("exited"), {}, Observed(JobState.FINISHED, "completed", "n1", 0)),
        (inspect("exited", 0, oom=True), {}, Observed(JobState.FINISHED, "completed", "n1", 0)),
        (inspect("exited", 3), {}, Observed(F, "exit code 3", "n1", 3)),
        (inspect("exited", 143), {}, Observed(F, "exit code 143 (killed by SIGTERM)", "n1", 143)),
        (inspect("exited", 137, oom=True, host=MB64), {}, Observed(F, OOM, "n1", 137)),
        (
            inspect("exited", 137, host=MB64),
            {},
            Observed(F, f"{KILL9} (ask for more mem)", "n1", 137),
        ),
        (inspect("exited", 143), CANCELLED, Observed(K, "CANCELLED", "n1", 143)),
        (inspect("exited", 137, oom=True), CANCELLED, Observed(K, "CANCELLED", "n1", 137)),
        (inspect("exited", 0), CANCELLED, Observed(K, "CANCELLED", "n1", 0)),
        (inspect("exited", 143), {"timed_out": TIMEOUT}, Observed(F, TIMEOUT, "n1", 143)),
        (
            inspect("exited", 127, error="exec: bash: not found"),
            {},
            Observed(F, "the job's container could not run: exec: bash: not found", "n1", 127),
        ),
        (inspect("dead", 0), {}, Observed(F, "the job's container died (engine error)", "n1")),
    ],
)  # fmt: skip
def test_inspect_to_observed(info, markers, want):
    assert observe_inspect(info, node="n1", **markers) == want


@pytest.mark.parametrize(
    ("script", "want"),
    [
        ("#!/bin/bash\n#SBATCH --signal=B:USR1@120\nexec python\n", 120),
        ("#!/bin/bash\n#SBATCH --signal=USR1@30\n", 30),
        ("#!/bin/bash\nexec python\n", 0),
        ("#!/bin/bash\necho '#SBATCH --signal=B:USR1@9' # not at a line start\n", 0),
    ],
)
def test_warn_seconds(script, want):
    assert warn_seconds(script) == want


# -- a scripted engine ----------------------------------------------------------------------
class FakeResponse:
    def __init__(self, status_code: int):
        self.status_code = status_code
        self.reason = "fake"


class FakeApi:
    """The part of ``docker.APIClient`` the executor uses, over a dict of containers."""

    def __init__(self, images=("img:1",), node="n1"):
        self.images = set(images)
        self.node = node
        self.by_name: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.signals: list[tuple[str, str]] = []
        self.down = False

    def _get(self, key: str) -> dict[str, Any]:
        if self.down:
            raise requests.exceptions.ConnectionError("connection refused")
        for c in self.by_name.values():
            if key in (c["Name"], c["Id"]):
                return c
        raise docker.errors.NotFound(f"No such container: {key}")

    def info(self):
        return {"Name": self.node}

    def inspect_image(self, image):
        if image not in self.images:
            raise docker.errors.ImageNotFound(f"No such image: {image}")
        return {}

    def containers(self, all=False, filters=None):
        if self.down:
            raise requests.exceptions.ConnectionError("connection refused")
        out = []
        for c in self.by_name.values():
            label = (filters or {}).get("label", "")
            key, _, value = label.partition("=")
            if label and (key not in c["Labels"] or (value and c["Labels"][key] != value)):
                continue
            if not all and c["State"] != "running":
                continue
            out.append({k: c[k] for k in ("Id", "Labels", "State", "Created", "Mounts")})
        return out

    def create_host_config(self, **kwargs):
        return kwargs

    def create_container(self, **kwargs):
        if kwargs["name"] in self.by_name:
            raise docker.errors.APIError("Conflict", response=FakeResponse(409))
        self.created.append(kwargs)
        mounts = kwargs["host_config"]["mounts"]
        self.by_name[kwargs["name"]] = {
            "Id": secrets.token_hex(8), "Name": kwargs["name"], "Labels": kwargs["labels"],
            "State": "created", "Created": int(time.time()), "ExitCode": 0, "OOMKilled": False,
            "Mounts": [{"Source": m["Source"], "Destination": m["Target"]} for m in mounts],
            "Memory": kwargs["host_config"].get("mem_limit", 0),
        }  # fmt: skip

    def start(self, name):
        self._get(name)["State"] = "running"

    def kill(self, name, signal=None):
        self.signals.append((self._get(name)["Name"], signal))

    def remove_container(self, key, force=False):
        del self.by_name[self._get(key)["Name"]]

    def inspect_container(self, key):
        c = self._get(key)
        state = {"Status": c["State"], "ExitCode": c["ExitCode"], "OOMKilled": c["OOMKilled"]}
        return {"State": state, "HostConfig": {"Memory": c["Memory"]}}

    def end(self, name: str, code: int = 0, oom: bool = False) -> None:
        self.by_name[name].update(State="exited", ExitCode=code, OOMKilled=oom)


class FakeClient:
    def __init__(self, api: FakeApi):
        self.api = api


#: The job's uid: the test's own unless that is root (whom jobs never run as).
UID = (os.getuid() or 1000, os.getgid() or 100)


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def make(api, tmp_path):
    made = []

    def factory(**kwargs) -> DockerExecutor:
        options = dict(
            image_for=lambda job: "img:1", network="lhnet", client_factory=lambda: FakeClient(api),
            hub_id="unit", uid_for=lambda user: UID, state_dir=tmp_path / "state",
        )  # fmt: skip
        options.update(kwargs)
        executor = DockerExecutor(**options)
        made.append(executor)
        return executor

    yield factory
    for executor in made:
        executor.close()


@pytest.fixture
def make_job(tmp_path):
    def factory(body: str = "true", **resources) -> Job:
        job_id = secrets.token_hex(16)
        work = tmp_path / "jobs" / job_id
        work.mkdir(parents=True, mode=0o700)
        (work / "job.sh").write_text(f"#!/bin/bash\n{body}\n")
        res = {"executor": "docker", "cpus": 2, "mem_mb": 512, "time_s": 600, "gpus": 0}
        res.update(resources)
        return Job(
            id=job_id, run_id="r1", project_id=1, user="ann", group="lqcd", executor="docker",
            state=JobState.QUEUED, created=int(time.time() * 1000) + len(os.listdir(work.parent)),
            resources=res, workdir=str(work),
        )  # fmt: skip

    return factory


async def submitted(executor: DockerExecutor, job: Job) -> Job:
    await executor.submit(job, Path(job.workdir) / "job.sh")
    if executor._kick_task is not None:
        await executor._kick_task  # the background start, so that tests see its effect
    return job


async def test_container_is_confined(make, make_job, api, monkeypatch):
    monkeypatch.setenv("LH_SERVICE_SECRET_MARKER", "x")
    executor = make(pids_limit=99, labels={"site": "a", HUB: "spoofed"})
    job = await submitted(executor, make_job(cpus=2, mem_mb=512, time_s=600))
    assert (await executor.poll([job]))[job.id] == Observed(R, "running on n1", "n1")
    [kw] = api.created
    assert kw["user"] == f"{UID[0]}:{UID[1]}"
    assert kw["environment"] == {"HOME": "/home/jovyan"}
    assert kw["use_config_proxy"] is False
    assert kw["entrypoint"] == [
        "bash", "-c", "exec bash /job/job.sh >>/job/stdout.log 2>>/job/stderr.log"
    ]  # fmt: skip
    assert kw["working_dir"] == "/job" and kw["name"] == f"lhjob-unit-{job.id}"
    assert kw["labels"][HUB] == "unit" and kw["labels"][JOB] == job.id
    assert kw["labels"]["site"] == "a" and kw["labels"][TIME_S] == "600"
    assert kw["labels"][WARN_S] == "0" and kw["labels"][GPUS] == ""
    host = kw["host_config"]
    assert host["privileged"] is False and host["cap_drop"] == ["ALL"]
    assert host["security_opt"] == ["no-new-privileges"] and host["read_only"] is True
    assert host["init"] is True and host["pids_limit"] == 99
    assert host["mem_limit"] == host["memswap_limit"] == 512 * 2**20
    assert host["nano_cpus"] == 2 * 10**9 and host["network_mode"] == "lhnet"
    assert [(m["Source"], m["Target"], m["Type"]) for m in host["mounts"]] == [
        (job.workdir, "/job", "bind")
    ]
    assert set(host["tmpfs"]) == {"/tmp", "/home/jovyan"}
    assert f"uid={UID[0]}" in host["tmpfs"]["/home/jovyan"]
    assert not {"binds", "devices", "cap_add", "device_requests", "volumes_from"} & set(host)
    assert "LH_SERVICE_SECRET_MARKER" not in repr(kw)
    assert os.stat(job.workdir).st_uid == UID[0]


async def test_gpus_by_device_id_around_servers_and_jobs(make, make_job, api):
    # a single-user server on this engine holds GPU 0, whatever node name its labels carry
    api.by_name["server"] = {
        "Id": "s1", "Name": "server", "State": "running", "Created": 0, "Mounts": [],
        "Labels": {server_labels.GPUS: "0", server_labels.NODE: "local",
                   server_labels.GPU_SHARED: "0"},
    }  # fmt: skip
    executor = make(gpu_inventory={"n1": ["0", "1", "2"]})
    first, second, third = (make_job(gpus=1) for _ in range(3))
    for job in (first, second, third):
        await submitted(executor, job)
    seen = await executor.poll([first, second, third])
    ids = {kw["labels"][JOB]: kw["host_config"]["device_requests"][0] for kw in api.created}
    assert ids[first.id]["DeviceIDs"] == ["1"] and ids[second.id]["DeviceIDs"] == ["2"]
    assert ids[first.id]["Driver"] == "nvidia" and ids[first.id]["Capabilities"] == [["gpu"]]
    assert seen[third.id].state == Q
    assert seen[third.id].reason == "waiting for 1 GPU(s): no node (n1) has 1 free GPU(s)"

    api.end(executor.container_name(first))
    seen = await executor.poll([first, second, third])
    assert seen[first.id].state == JobState.FINISHED and seen[third.id].state == R
    assert api.created[-1]["host_config"]["device_requests"][0]["DeviceIDs"] == ["1"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": "img:missing"}, "image 'img:missing' is not on this Docker engine"),
        ({"gpus": 3}, "node n1 has 2 GPU(s) in this executor's gpu_inventory"),
        ({"nodes": 2}, "one-node jobs: ask for nodes=1"),
        ({"script": "/elsewhere/job.sh"}, "the docker executor runs"),
        ({"uid": (0, 0)}, "jobs never run as root"),
    ],
)
async def test_submit_refuses(make, make_job, change, message):
    executor = make(
        image_for=lambda job: change.get("image", "img:1"),
        gpu_inventory={"n1": ["0", "1"]},
        uid_for=lambda user: change.get("uid", UID),
    )
    job = make_job(**{k: v for k, v in change.items() if k in ("gpus", "nodes")})
    with pytest.raises(ExecutorError, match=re.escape(message)):
        await executor.submit(job, Path(change.get("script", Path(job.workdir) / "job.sh")))


async def test_time_limit_term_then_kill_then_timeout(make, make_job, api):
    executor = make(kill_grace_s=3600)
    job = await submitted(executor, make_job("sleep 60", time_s=5))
    name = executor.container_name(job)
    api.by_name[name]["Created"] -= 100  # started long ago: past its limit
    seen = await executor.poll([job])
    assert seen[job.id] == Observed(R, "time limit reached: stopping", "n1")
    await executor.poll([job])
    assert api.signals == [(name, "SIGTERM")]  # once, not at every poll
    executor.kill_grace_s = 0
    await executor.poll([job])
    assert api.signals[-1] == (name, "SIGKILL")
    api.end(name, 137)
    seen = (await executor.poll([job]))[job.id]
    assert seen.state == F and seen.reason.startswith("TIMEOUT: the job reached its time limit")
    assert seen.exit_code == 137


async def test_warning_signal_before_the_limit(make, make_job, api):
    executor = make()
    script = "#SBATCH --signal=B:USR1@30\nexec python -m flows.train"
    job = await submitted(executor, make_job(script, time_s=100))
    name = executor.container_name(job)
    await executor.poll([job])
    assert api.signals == []
    api.by_name[name]["Created"] -= 80
    await executor.poll([job])
    await executor.poll([job])
    assert api.signals == [(name, "SIGUSR1")]


async def test_cancel_running_and_queued(make, make_job, api):
    executor = make(max_concurrent=1, kill_grace_s=3600)
    running, queued = make_job(), make_job()
    await submitted(executor, running)
    await submitted(executor, queued)
    seen = await executor.poll([running, queued])
    assert seen[queued.id] == Observed(Q, "waiting for a free slot (1 docker jobs at most)")
    await executor.cancel(queued)
    await executor.cancel(running)
    name = executor.container_name(running)
    assert api.signals == [(name, "SIGTERM")]
    seen = await executor.poll([running, queued])
    assert seen[queued.id] == Observed(K, "CANCELLED before it started")
    assert seen[running.id] == Observed(R, "cancelled: stopping", "n1")
    assert list(api.by_name) == [name]  # the queued job never got a container
    api.end(name, 143)
    assert (await executor.poll([running]))[running.id] == Observed(K, "CANCELLED", "n1", 143)
    await executor.cancel(running)  # ended: a no-op
    assert api.signals == [(name, "SIGTERM")]


async def test_restart_reattaches_reports_and_loses(make, make_job, api):
    first = make(max_concurrent=2)
    done, vanished, queued = make_job(), make_job(), make_job()
    for job in (done, vanished, queued):
        await submitted(first, job)
    first.close()  # the service stops: done ends, vanished is removed behind its back
    api.end(first.container_name(done), 0)
    del api.by_name[first.container_name(vanished)]

    second = make(max_concurrent=2)
    seen = await second.poll([done, vanished, queued])
    assert seen[done.id] == Observed(JobState.FINISHED, "completed", "n1", 0)
    assert seen[vanished.id].state == JobState.LOST
    assert "vanished" in seen[vanished.id].reason
    assert seen[queued.id] == Observed(R, "running on n1", "n1")  # the queue outlived the service
    await second.poll([queued])  # done and vanished are recorded: done's container goes
    assert list(api.by_name) == [second.container_name(queued)]


async def test_engine_down_is_an_executor_error(make, make_job, api):
    executor = make()
    api.down = True
    with pytest.raises(ExecutorError, match="cannot reach the Docker engine"):
        await executor.poll([make_job()])


def test_bad_hub_id():
    with pytest.raises(ValueError, match="hub_id='Bad Id' cannot name containers"):
        DockerExecutor(image_for=str, network="n", hub_id="Bad Id")
