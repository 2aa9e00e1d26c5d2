"""The services' processes: each serves, and exits when the Hub that started it is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.hub import free_port


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")


SERVICES = {
    "quotas": {"LATTICEHUB_QUOTAS_POLICY": json.dumps({"group_limits": {"lqcd": {}}})},
    "experiments": {},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_exits_when_its_hub_dies(tmp_path, name):
    port = free_port()
    pid_file = tmp_path / "service.pid"
    env = {
        **os.environ,
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
        "JUPYTERHUB_CLIENT_ID": f"service-{name}",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": f"/services/{name}/",
        # their databases and artifacts in tmp_path
        "LATTICEHUB_STATE": str(tmp_path),
        "LATTICEHUB_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "LATTICEHUB_TRACKING_DB": f"sqlite:///{tmp_path / 'tracking.sqlite'}",
        **SERVICES[name],
    }
    # a stand-in "Hub": starts the service as JupyterHub does (new session), then waits
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         f"p = subprocess.Popen([sys.executable, '-m', 'hub_ext.{name}'], start_new_session=True)\n"
         f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
         "time.sleep(600)\n"],
        env=env,
    )  # fmt: skip
    try:

        def answers() -> bool:
            try:
                url = f"http://127.0.0.1:{port}/services/{name}/api/nobody"
                return requests.get(url, timeout=1).status_code in (401, 403, 404)
            except requests.RequestException:
                return False

        wait_for(answers, 30, "the service did not answer")
        service = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)  # as a Hub killed with SIGKILL
        parent.wait(10)

        def gone() -> bool:
            try:
                os.kill(service, 0)
            except ProcessLookupError:
                return True
            # reaped by init, or a zombie until then
            with open(f"/proc/{service}/stat") as f:
                return f.read().split()[2] == "Z"

        wait_for(gone, 10, "the service outlived its Hub")
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists():  # never leave the service behind, even when the test failed
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
