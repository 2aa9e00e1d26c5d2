"""The notebook launcher and monitor with the Slurm executor (real slurmctld/slurmd)."""

from __future__ import annotations

import os
import sys

import pytest

from latticehub.client import TrackingClient
from tests.service.test_jobs_local import ROOT
from tests.slurm.test_jobs_slurm import service
from tests.widgets.conftest import TINY_EXTRA, TINY_FORM, fill
from widgets import TrainingLauncher

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True)
def _repo_env(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in ("LATTICEHUB_TOKEN", "LATTICEHUB_TRACKING_URL", "JUPYTERHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_launcher_offers_slurm_and_the_monitor_follows_the_job_to_finished(slurm, tmp_path):
    svc = service(tmp_path, [sys.executable, "-m", "flows.train", "--config", "{config}",
                             "--out", "{out}"], validate=True)  # fmt: skip
    panel = TrainingLauncher(client=TrackingClient(svc.url, "tok-ann"), project="widgets-slurm")
    try:
        # the choices come from the service: this group may only use Slurm's debug partition
        assert panel.fields["executor"].options == ("slurm",)
        assert "debug" in panel.fields["partition"].options
        fill(panel, {**TINY_FORM, "partition": "debug", "mem": "1G", "time": "0:05:00"},
             extra=TINY_EXTRA)  # fmt: skip
        assert panel.errors == {}, panel.errors
        panel.launch_button.click()
        monitor = panel.monitor
        assert monitor is not None, panel.status_line.value
        assert monitor.wait(150), monitor.status_line.value
        assert monitor.status == "FINISHED", monitor.status_line.value
        assert monitor.progress.value == monitor.progress.max == TINY_FORM["steps"]
        job = svc.call("GET", f"/jobs/{panel.job['id']}").json()
        assert job["executor"] == "slurm" and job["external_id"].isdigit() and job["node"]
        assert svc.calls.count("sbatch") == 1
    finally:
        panel.close()
        svc.stop()
