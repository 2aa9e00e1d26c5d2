"""Two experiments replicas behind haproxy and the real Hub, over one PostgreSQL database.

As docs/replicas.md describes: the Hub's service entry is an external one (no command, a
fixed token) whose URL is haproxy's front address; two ``python -m hub_ext.experiments``
processes serve behind it with the same token and settings. A reader through the Hub sees
what both replicas write, and loses nothing when one replica stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import _drop, _postgres_url, service_missing
from tests.hub import free_port

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

#: the longest a reader waits for what a write changed (not a timing)
PATIENCE_S = 30.0


@pytest.fixture
def pg_url() -> Iterator[str]:
    url, (admin_url, db) = _postgres_url()
    yield url
    _drop(admin_url, db)


def wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextlib.contextmanager
def haproxy(workdir: Path, bind: str, servers: list[int]) -> Iterator[None]:
    """haproxy in the foreground: round robin over ``servers`` with health checks."""
    exe = shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if exe is None:
        service_missing("haproxy", "apt-get install haproxy (Debian's package)")
    assert exe is not None
    lines = [
        "defaults",
        "    mode http",
        "    timeout connect 5s",
        "    timeout client 75s",
        "    timeout server 75s",
        "    retries 3",
        "    option redispatch",
        "frontend experiments",
        f"    bind {bind}",
        "    default_backend replicas",
        "backend replicas",
        "    balance roundrobin",
        "    option httpchk GET /services/experiments/api/v1/openapi.json",
        "    http-check expect status 200",
        *(
            f"    server r{i} 127.0.0.1:{p} check inter 1s fall 2 rise 1"
            for i, p in enumerate(servers)
        ),
    ]
    config = workdir / "haproxy.cfg"
    config.write_text("\n".join(lines) + "\n")
    log = open(workdir / "haproxy.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([exe, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class Replica:
    """One ``python -m hub_ext.experiments`` process with the service's environment."""

    def __init__(self, workdir: Path, port: int, env: dict[str, str]):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/services/experiments/api/v1"
        self.log_path = workdir / f"replica-{port}.log"
        log = open(self.log_path, "w")  # noqa: SIM115 - the process holds it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub_ext.experiments", "--log-level=INFO",
             "--ExperimentsApp.exit_with_hub=False",
             "--ExperimentsApp.heartbeat_check_interval=0.5"],
            env={**env, "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not answers(f"{self.url}/openapi.json"):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"replica {port} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def write_log(api: str, run_id: str, headers: dict, offset: int, line: str) -> int:
    body: dict[str, Any] = {"offset": offset, "lines": [line]}
    r = requests.post(f"{api}/runs/{run_id}/logs/stdout", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["next_offset"]


def write_point(api: str, run_id: str, headers: dict, step: int) -> None:
    body: dict[str, Any] = {"metrics": [{"key": "loss", "steps": [step], "values": [step / 2]}]}
    r = requests.post(f"{api}/runs/{run_id}/metrics", json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text


def updates(api: str, run_id: str, headers: dict, cursor: dict, wait: float = 2) -> dict:
    params = {k: v for k, v in cursor.items() if v is not None}
    params["metrics"] = cursor.get("metrics") or "1"
    params["wait"] = wait
    r = requests.get(
        f"{api}/runs/{run_id}/updates", params=params, headers=headers, timeout=wait + 30
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_replicas_behind_haproxy_and_the_hub(make_hub, test_network, tmp_path, pg_url):
    gateway = test_network[1]
    token = secrets.token_hex(24)
    env_file = tmp_path / "experiments-environment.json"
    # the service entry of docs/replicas.md: external, a fixed token, the front's URL
    extra = f"""
import json as _json
for _service in c.JupyterHub.services:
    if _service["name"] == "experiments":
        _service.pop("command")
        with open({str(env_file)!r}, "w") as _f:
            _json.dump(_service.pop("environment"), _f)
        _service["api_token"] = {token!r}
        _service["oauth_client_id"] = "service-experiments"
"""
    hub = make_hub(extra)
    hub.env["LATTICEHUB_TRACKING_DB"] = pg_url
    front_port = int(hub.env["LATTICEHUB_EXPERIMENTS_PORT"])  # the entry's URL: the front
    hub.start()
    hub.create_users(["ann"])
    hub.create_group("lqcd", ["ann"])
    env = {
        **os.environ,
        **json.loads(env_file.read_text()),
        "LATTICEHUB_HEARTBEAT_TIMEOUT": "2",
        "JUPYTERHUB_API_TOKEN": token,
        "JUPYTERHUB_API_URL": f"http://{gateway}:{hub.hub_port}/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_CLIENT_ID": "service-experiments",
        "JUPYTERHUB_SERVICE_NAME": "experiments",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/experiments/",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/experiments/oauth_callback",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:services!service=experiments"]),
    }
    ports = [free_port(), free_port()]
    replicas: list[Replica] = []
    try:
        replicas += [Replica(tmp_path, port, env) for port in ports]
        with haproxy(tmp_path, f"{gateway}:{front_port}", ports):
            hub.wait_experiments()
            for replica in replicas:
                assert "live changes shared with other replicas" in replica.log()
            headers = {"Authorization": f"token {hub.user_token('ann')}"}
            api = hub.experiments  # through the Hub's proxy and haproxy
            r = requests.post(f"{api}/projects", json={"name": "rep", "group": "lqcd"},
                              headers=headers, timeout=30)  # fmt: skip
            assert r.status_code == 201, r.text
            r = requests.post(f"{api}/runs", json={"project": "rep"}, headers=headers, timeout=30)
            run_id = r.json()["id"]

            cursor: dict[str, Any] = {}
            lines: list[str] = []
            points: dict[int, Any] = {}

            def read(via: str) -> None:
                nonlocal cursor
                body = updates(via, run_id, headers, cursor)
                got = body["stdout"]["lines"]
                assert [x["offset"] for x in got] == list(range(len(lines), len(lines) + len(got)))
                lines.extend(x["text"] for x in got)
                if body["metrics"]["reset"]:
                    points.clear()
                points.update({p["step"]: p["value"] for p in body["metrics"]["points"]})
                cursor = body["cursor"]

            read(api)
            offset = 0
            for i in range(6):  # each write directly to one replica, in turn
                offset = write_log(replicas[i % 2].url, run_id, headers, offset, f"line {i}")
                write_point(replicas[i % 2].url, run_id, headers, i)
            deadline = time.monotonic() + PATIENCE_S
            while len(lines) < 6 or len(points) < 6:
                assert time.monotonic() < deadline, f"the reader saw {lines} and {points}"
                read(api)
            assert lines == [f"line {i}" for i in range(6)]
            assert points == {i: i / 2 for i in range(6)}

            # one replica stops: readers and writers go on through the other one
            replicas[0].stop()
            offset = write_log(replicas[1].url, run_id, headers, offset, "after")
            write_point(replicas[1].url, run_id, headers, 6)
            deadline = time.monotonic() + PATIENCE_S
            while len(lines) < 7 or len(points) < 7:
                assert time.monotonic() < deadline, f"the reader saw {lines} and {points}"
                with contextlib.suppress(requests.RequestException, AssertionError):
                    read(api)  # haproxy may still try the stopped replica once
            assert lines == [f"line {i}" for i in range(6)] + ["after"]
            assert points == {i: i / 2 for i in range(7)}

            # a silent run is marked LOST once, by whichever replica sweeps
            requests.patch(f"{api}/runs/{run_id}", json={"heartbeat": int(time.time() * 1000)},
                           headers=headers, timeout=30).raise_for_status()  # fmt: skip
            wait_for(
                lambda: requests.get(f"{api}/runs/{run_id}", headers=headers, timeout=30)
                .json()["status"] == "LOST",
                "the silent run was never marked LOST",
            )  # fmt: skip
            events = requests.get(f"{api}/runs/{run_id}/events", headers=headers, timeout=30)
            assert events.status_code == 200, events.text
            assert [e["kind"] for e in events.json()["items"]].count("lost") == 1
    finally:
        for replica in replicas:
            replica.stop()
