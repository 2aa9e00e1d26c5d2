"""Fixtures for the docker tier: a real engine, the single-user image, a test network."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.store import Job
from latticehub import labels
from tests.conftest import service_missing
from tests.hub import HubProcess

IMAGE = os.environ.get("LATTICEHUB_IMAGE", "latticehub/singleuser:latest")


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:  # any failure means "no engine"
        service_missing(f"Docker engine ({e})", "run scripts/services.sh")
    if not shutil.which("configurable-http-proxy"):
        service_missing("configurable-http-proxy", "run scripts/services.sh install")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        service_missing(f"image {IMAGE}", "run images/build.sh")
    return client


@pytest.fixture(scope="session")
def test_network(docker_client: docker.DockerClient) -> Iterator[tuple[str, str]]:
    """A bridge network made by this run: (name, the host's gateway address on it)."""
    name = f"lhtest-{secrets.token_hex(3)}"
    net = docker_client.networks.create(name, driver="bridge", labels={"org.latticehub.test": "1"})
    net.reload()
    gateway = net.attrs["IPAM"]["Config"][0]["Gateway"]
    yield name, gateway
    for container in docker_client.containers.list(all=True, filters={"network": name}):
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    with contextlib.suppress(docker.errors.APIError):
        net.remove()


@pytest.fixture(scope="module")
def swarm_node(docker_client: docker.DockerClient) -> Iterator[str]:
    """The node's hostname; inits a single-node Swarm for the module (and leaves it after) if
    none is active."""
    made = docker_client.info()["Swarm"]["LocalNodeState"] != "active"
    if made:
        subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
            check=True,
            capture_output=True,
        )
    yield docker_client.info()["Name"]
    if made:
        subprocess.run(["docker", "swarm", "leave", "--force"], check=False, capture_output=True)


@pytest.fixture
def make_job(tmp_path: Path) -> Callable[..., Job]:
    """A job of the docker executors: ``job.sh`` holding ``body`` in a directory of its own."""

    def factory(body: str, user: str = "ann", **resources) -> Job:
        job_id = secrets.token_hex(16)
        work = tmp_path / "jobs" / job_id
        work.mkdir(parents=True, mode=0o700)
        (work / "job.sh").write_text(f"#!/bin/bash\nset -euo pipefail\n{body}\n")
        res = {"executor": "docker", "cpus": 1, "mem_mb": 256, "time_s": 600, "gpus": 0}
        res.update(resources)
        return Job(
            id=job_id, run_id=f"r{job_id[:8]}", project_id=1, user=user, group="lqcd",
            executor="docker", state=JobState.QUEUED, created=int(time.time() * 1000),
            resources=res, workdir=str(work),
        )  # fmt: skip

    return factory


def remove_hub_objects(client: docker.DockerClient, hub_id: str) -> None:
    """Remove every container (servers and jobs) and service labelled with this hub id."""
    from hub_ext.experiments.jobs.docker_states import HUB as JOB_HUB

    for selector in (f"{labels.HUB}={hub_id}", f"{JOB_HUB}={hub_id}"):
        for container in client.containers.list(all=True, filters={"label": selector}):
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
    selector = f"{labels.HUB}={hub_id}"
    with contextlib.suppress(docker.errors.APIError):
        for service in client.services.list(filters={"label": selector}):
            service.remove()
    for volume in client.volumes.list(filters={"name": f"lhtest-{hub_id}-"}):
        with contextlib.suppress(docker.errors.APIError):
            volume.remove(force=True)


def dump_containers(client: docker.DockerClient, hub_id: str) -> str:
    """Logs of this hub's containers, for failure reports (debug_docker)."""
    out = []
    for container in client.containers.list(all=True, filters={"label": f"{labels.HUB}={hub_id}"}):
        logs = container.logs(tail=30).decode(errors="replace")
        out.append(f"--- {container.name} ({container.status})\n{logs}")
    return "\n".join(out)


@pytest.fixture
def make_hub(docker_client, test_network, tmp_path, request) -> Iterator:
    """Factory of real Hubs; removes their containers and dumps logs on failure."""
    hubs: list[HubProcess] = []
    hub_ids: set[str] = set()

    def factory(extra_config: str = "", *, hub_id: str | None = None, **kwargs) -> HubProcess:
        hub_id = hub_id or f"t{secrets.token_hex(4)}"
        hub_ids.add(hub_id)
        hub = HubProcess(
            tmp_path / f"hub{len(hubs)}",
            hub_ip=test_network[1],
            network=test_network[0],
            hub_id=hub_id,
            extra_config=extra_config,
            **kwargs,
        )
        hubs.append(hub)
        return hub

    yield factory
    failed = getattr(request.node, "rep_call", None)
    for hub in hubs:
        if failed is not None and failed.failed:
            print(f"==== hub log {hub.workdir}\n{hub.tail(120)}")
        hub.stop()
    for hub_id in hub_ids:
        if failed is not None and failed.failed:
            print(dump_containers(docker_client, hub_id))
        remove_hub_objects(docker_client, hub_id)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
