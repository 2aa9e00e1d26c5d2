"""A real JupyterHub (with configurable-http-proxy) in a subprocess, for the docker tier."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubProcess:
    """Runs ``jupyterhub -f <config>`` that loads the repository's jupyterhub_config.py.

    Args:
        workdir: directory for the config, database, pid files and log.
        hub_ip: the host's address on the test's Docker network (Hub API binds there).
        network: the Docker network of user containers.
        hub_id: label value that separates this test's containers.
        extra_config: Python lines appended to the config.
        db_url: Hub database URL (default: SQLite in workdir).
        spawner: "docker" or "swarm".
    """

    def __init__(
        self,
        workdir: Path,
        *,
        hub_ip: str,
        network: str,
        hub_id: str,
        extra_config: str = "",
        db_url: str | None = None,
        spawner: str = "docker",
    ):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.experiments = f"{self.url}/services/experiments/api/v1"
        self.api = f"{self.url}/hub/api"
        self.log_path = workdir / "hub.log"
        self.proc: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "LATTICEHUB_DEMO": "0",
            "LATTICEHUB_STATE": str(workdir),
            "LATTICEHUB_HUB_IP": hub_ip,
            "LATTICEHUB_HUB_PORT": str(self.hub_port),
            "LATTICEHUB_NETWORK": network,
            "LATTICEHUB_SPAWNER": spawner,
            "LATTICEHUB_BIND_URL": self.url,
            "LATTICEHUB_HUB_ID": hub_id,
            "LATTICEHUB_EXPERIMENTS_PORT": str(free_port()),
            # its own free port: the default (experiments + 1) may be a client's ephemeral port
            "LATTICEHUB_QUOTAS_PORT": str(free_port()),
            "CONFIGPROXY_AUTH_TOKEN": secrets.token_hex(16),
        }
        if db_url:
            self.env["LATTICEHUB_DB_URL"] = db_url
        cls = "GroupLimitSwarmSpawner" if spawner == "swarm" else "GroupLimitDockerSpawner"
        self.spawner_class = cls
        config = f"""
load_subconfig({str(ROOT / "jupyterhub_config.py")!r})
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {self.token!r}}})
c.JupyterHub.load_roles.append({{
    "name": "test-admin",
    "scopes": ["admin:users", "admin:servers", "admin:groups", "groups", "users",
               "servers", "read:metrics", "list:users", "tokens"],
    "services": ["test-admin"],
}})
c.{cls}.prefix = "jupyter-{hub_id}"
c.{cls}.home_volume = "lhtest-{hub_id}-home-{{username}}"
c.{cls}.start_timeout = 180
c.{cls}.http_timeout = 120
c.{cls}.orphan_report_delay = 5
c.JupyterHub.log_level = "DEBUG"
{extra_config}
"""
        (workdir / "test_config.py").write_text(config)

    # -- process -------------------------------------------------------------------
    def start(self, timeout: float = 90) -> HubProcess:
        """Start the Hub and wait until its REST API answers."""
        log = open(self.log_path, "a")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.workdir / "test_config.py")],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Hub exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(f"{self.api}/", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Hub did not answer within {timeout}s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL the Hub alone (the proxy and the containers keep running)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the Hub and its proxy (servers keep running: cleanup_servers=False)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        pid_file = self.workdir / "jupyterhub-proxy.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass

    def tail(self, lines: int = 60) -> str:
        """The last lines of the Hub's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- REST API ---------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call the Hub REST API with the admin service token."""
        headers = {"Authorization": f"token {self.token}"}
        kwargs.setdefault("timeout", 60)
        return requests.request(method, f"{self.api}{path}", headers=headers, **kwargs)

    def wait_experiments(self, timeout: float = 60) -> None:
        """Wait until the managed experiments service (started beside the Hub) answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.experiments}/projects", timeout=5).status_code in (
                    401,
                    403,
                ):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the experiments service did not answer in {timeout}s:\n{self.tail()}")

    def user_token(self, name: str, scopes: list[str] | None = None) -> str:
        """A new API token of ``name`` (default scopes: the user's own)."""
        body = {"note": "test"} if scopes is None else {"note": "test", "scopes": scopes}
        r = self.request("POST", f"/users/{name}/tokens", json=body)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def create_users(self, names: list[str]) -> None:
        """Create users that do not exist yet."""
        r = self.request("POST", "/users", json={"usernames": names})
        assert r.status_code in (201, 409), r.text

    def create_group(self, name: str, users: list[str], properties: dict | None = None) -> None:
        """Create a group with members (and properties)."""
        r = self.request("POST", f"/groups/{name}", json={"users": users})
        assert r.status_code in (201, 409), r.text
        if properties is not None:
            self.set_properties(name, properties)

    def set_properties(self, group: str, properties: dict) -> None:
        """Replace a group's properties, as a group manager would."""
        r = self.request("PUT", f"/groups/{group}/properties", json=properties)
        assert r.status_code == 200, r.text

    def spawn(self, user: str, options: dict | None = None) -> requests.Response:
        """POST /users/{user}/server (201 started, 202 pending, 4xx refused)."""
        return self.request("POST", f"/users/{user}/server", json=options or {})

    def server(self, user: str) -> dict | None:
        """The user's default server model, or None."""
        r = self.request("GET", f"/users/{user}")
        r.raise_for_status()
        return r.json().get("servers", {}).get("")

    def wait_ready(self, user: str, timeout: float = 180) -> dict:
        """Wait until the user's server is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.server(user)
            if server and server.get("ready"):
                return server
            if server is None:
                raise AssertionError(f"{user}'s server went away while starting:\n{self.tail()}")
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server not ready in {timeout}s:\n{self.tail()}")

    def stop_server(self, user: str, timeout: float = 60) -> None:
        """Stop the user's server and wait until it is gone."""
        r = self.request("DELETE", f"/users/{user}/server")
        assert r.status_code in (202, 204), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server(user) is None:
                return
            time.sleep(0.5)
        raise AssertionError(f"{user}'s server did not stop in {timeout}s")
