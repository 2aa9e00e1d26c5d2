"""Widgets against the real experiments app with jobs (local executor), in-process.

The service is ``tests.service.test_jobs_local.Service``: the real tornado app, a real
JobManager whose local executor runs ``python -m flows.train`` as subprocesses, and the
stand-in Hub auth of ``tests.service.conftest`` (tokens tok-ann, tok-bob, tok-adm).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hub_ext.experiments.jobs.manager import default_command
from latticehub.client import TrackingClient
from tests.hub import free_port
from tests.service.test_jobs_local import ROOT, TINY, Service

#: ann's group may run 4 local jobs at once.
LIMITS = {"lqcd": {"executors": ["local"], "max_jobs": 4, "max_cpus": 2, "max_time": "0:10:00"}}
#: The launcher's fields for TINY (a training that ends in a few seconds).
TINY_FORM = {"action": "phi4", "L": TINY["L"], "n_layers": TINY["n_layers"], "hidden": "4",
             "kernel": 3, "steps": TINY["steps"], "batch_size": TINY["batch_size"],
             "lr": 5e-3, "seed": 0}  # fmt: skip
TINY_EXTRA = '{"log_every": 5, "eval_samples": 500, "device": "cpu"}'


@pytest.fixture(scope="module")
def job_env():
    """Local jobs run ``python -m flows.train`` from their job directory: find the repo."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        mp.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        mp.setenv("OMP_NUM_THREADS", "1")
        for name in ("LATTICEHUB_TOKEN", "LATTICEHUB_TRACKING_URL", "JUPYTERHUB_API_TOKEN",
                     "JUPYTERHUB_API_URL"):  # fmt: skip
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="module")
def service(job_env, tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("widgets"), default_command(),
                        limits=LIMITS)  # fmt: skip
    yield svc
    for job in svc.call("GET", "/jobs", token="tok-adm").json()["items"]:
        if job["state"] in ("QUEUED", "RUNNING"):
            svc.call("DELETE", f"/jobs/{job['id']}", token="tok-adm")
    svc.stop()


def client_for(svc: Service, token: str = "tok-ann", timeout: float = 30) -> TrackingClient:
    return TrackingClient(svc.url, token, timeout=timeout)


@pytest.fixture(scope="module")
def ann(service):
    return client_for(service)


def unreachable_client() -> TrackingClient:
    return TrackingClient(f"http://127.0.0.1:{free_port()}/services/experiments", "tok-ann", 3)


def fill(launcher, values: dict, extra: str | None = None) -> None:
    for key, value in values.items():
        launcher.fields[key].value = value
    if extra is not None:
        launcher.fields["extra"].value = extra


def wait_for(predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def job_workdir(svc: Service, job_id: str) -> Path:
    return Path(svc.manager.jobs.get_job(job_id).workdir)


def fake_client(**answers):
    """A stand-in TrackingClient: its methods are autospecced (a wrong call fails) and
    answer from ``answers`` (method name -> return value, or an exception to raise)."""
    from unittest import mock

    client = mock.create_autospec(TrackingClient, instance=True)
    client.url, client.token, client.timeout = "http://svc/services/experiments", "tok", 30
    client.long_poll_wait.return_value = 25.0
    for name, value in answers.items():
        method = getattr(client, name)
        if isinstance(value, BaseException):
            method.side_effect = value
        else:
            method.return_value = value
    return client
