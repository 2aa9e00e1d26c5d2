"""The ``docker`` executor on a Swarm, against the real stack: the same promises as on one engine.

The Hub runs the repository's ``jupyterhub_config.py`` with the Swarm spawner
(``LATTICEHUB_SPAWNER=swarm``), which makes the experiments service run docker jobs as Swarm
services on no network. mallory's training job is inspected from the host while it runs: its
uid, capabilities, ``no-new-privileges`` (set by ``setpriv`` in the task), read-only root,
limits *and* reservations, its one bind mount, and nothing of the service's environment; and
it reaches the tracking service through its node's gateway.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from hub_ext.experiments.jobs.docker_states import HUB as JOB_HUB_LABEL
from hub_ext.experiments.jobs.docker_states import JOB as JOB_ID_LABEL
from tests.security.conftest import Stack, start_stack
from tests.security.test_jobs_boundaries import (
    HARMLESS,
    cancel,
    environ,
    job_dir,
    service_environ,
    start_long_job,
    uids,
)

pytestmark = pytest.mark.swarm


@pytest.fixture
def swarm_stack(swarm_node, make_hub, docker_client) -> Iterator[Stack]:
    hub_id = f"w{secrets.token_hex(4)}"
    yield start_stack(make_hub(hub_id=hub_id, spawner="swarm"))
    for service in docker_client.services.list(filters={"label": f"{JOB_HUB_LABEL}={hub_id}"}):
        with contextlib.suppress(docker.errors.APIError):
            service.remove()


def status_of(pid: str) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def test_swarm_job_runs_unprivileged_with_nothing_of_the_service(swarm_stack, docker_client):
    stack = swarm_stack
    job, container = start_long_job(stack, docker_client, "mallory", "mallory-swarm")
    try:
        (service,) = docker_client.services.list(filters={"label": f"{JOB_ID_LABEL}={job['id']}"})
        task = service.attrs["Spec"]["TaskTemplate"]
        resources = task["Resources"]
        assert resources["Limits"]["MemoryBytes"] == 1024 * 2**20
        assert resources["Reservations"]["MemoryBytes"] == 1024 * 2**20  # placed where it fits
        assert resources["Limits"]["NanoCPUs"] == resources["Reservations"]["NanoCPUs"] == 10**9
        assert resources["Limits"]["Pids"] > 0
        assert task["RestartPolicy"]["Condition"] == "none"

        attrs = container.attrs
        host = attrs["HostConfig"]
        assert attrs["Config"]["User"].split(":")[0] == "1000", attrs["Config"]["User"]
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
        assert host["ReadonlyRootfs"] is True
        assert host["PidsLimit"] and host["PidsLimit"] > 0
        binds = [(m["Source"], m["Destination"]) for m in attrs["Mounts"] if m["Type"] != "tmpfs"]
        assert binds == [(str(job_dir(stack, job["id"])), "/job")], attrs["Mounts"]
        assert "docker.sock" not in str(attrs), "the engine's socket reaches the job"

        service_env = service_environ(stack)
        secret = service_env["JUPYTERHUB_API_TOKEN"]
        top = container.top()
        pids = [row[top["Titles"].index("PID")] for row in top["Processes"]]
        checked = 0
        for pid in pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                env, ids, status = environ(pid), uids(pid), status_of(pid)
                assert set(ids) == {1000}, (pid, ids)
                assert int(status["CapEff"], 16) == 0, (pid, status["CapEff"])
                if status.get("Name") != "docker-init":  # init starts setpriv, which sets it
                    assert status["NoNewPrivs"].strip() == "1", (pid, status.get("Name"))
                leaked = {k for k in env if k.startswith(("JUPYTERHUB_", "JPY_", "CONFIGPROXY_"))}
                assert not leaked, (pid, sorted(leaked))
                assert secret not in Path(f"/proc/{pid}/environ").read_text(errors="replace")
                same = {k for k, v in env.items() if service_env.get(k) == v} - HARMLESS
                assert not same, (pid, sorted(same))
                checked += 1
        assert checked, "no process of the job was inspected"

        # on no network, the job reaches the tracking service through its node's gateway
        deadline = time.monotonic() + 120
        metrics: dict = {}
        while time.monotonic() < deadline and not metrics:
            metrics = stack.call("mallory", "GET", f"/runs/{job['run_id']}").json()["metrics"]
            time.sleep(1)
        assert metrics, "the swarm job never reached the tracking service"
    finally:
        ended = cancel(stack, "mallory", job["id"])
    assert ended["state"] == "KILLED", ended
