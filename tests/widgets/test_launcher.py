"""TrainingLauncher: inline validation, presets, clone, launch -> monitor, service errors."""

from __future__ import annotations

import json
import sys

import pytest

from tests.widgets.conftest import (
    TINY_EXTRA,
    TINY_FORM,
    Service,
    client_for,
    fill,
    job_workdir,
    unreachable_client,
)
from widgets import RunMonitor, TrainingLauncher, download_artifacts, load_model


def form_values(launcher):
    return {name: widget.value for name, widget in launcher.fields.items()}


@pytest.fixture
def launcher(ann):
    panel = TrainingLauncher(client=ann, project="widgets-ci")
    yield panel
    panel.close()


def test_starts_from_the_recommended_config_with_the_groups_options(launcher):
    assert launcher.errors == {} and not launcher.launch_button.disabled
    assert "lh-launch" in launcher.launch_button._dom_classes
    assert "lh-status" in launcher.status_line._dom_classes
    from flows.config import make_config

    recommended = make_config({"action": "phi4", "L": 8}).to_dict()
    config = launcher.config()
    for key in ("L", "m2", "lam", "n_layers", "hidden", "kernel", "steps", "batch_size", "lr"):
        assert config[key] == recommended[key], key
    assert launcher.fields["group"].options == ("lqcd",)
    assert launcher.fields["executor"].options == ("local",)
    assert launcher.request()["resources"] == {"executor": "local", "cpus": 1}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"L": 3}, "L", "even L"),
        ({"L": -4}, "L", "out of range"),
        ({"lr": -1e-3}, "lr", "lr=-0.001 is out of range"),
        ({"hidden": "8,x"}, "hidden", "hidden"),
        ({"kernel": 4}, "kernel", "odd"),
        ({"action": "u1", "L": 6}, "L", "divisible by 4"),
        ({"extra": '{"log_every": 0}'}, "extra", "log_every"),
        ({"extra": "{not json"}, "extra", "not valid JSON"),
        ({"extra": '{"nonsense": 1}'}, "extra", "unknown config key"),
        ({"gpus": 2}, "gpus", "at most 0 GPUs"),
        ({"cpus": 3}, "cpus", "at most 2 CPUs"),
        ({"project": ""}, "project", "project"),
    ],
)
def test_a_bad_value_is_highlighted_with_the_reason_and_launch_disabled(
    launcher, changes, field, words
):
    fill(launcher, changes)
    assert field in launcher.errors, launcher.errors
    assert words in launcher.errors[field]
    widget = launcher.fields[field]
    assert "lh-invalid" in widget._dom_classes and widget.layout.border
    assert words.split()[0] in launcher.field_errors[field].value
    assert launcher.launch_button.disabled
    launcher.launch_button.click()  # nothing is submitted
    assert launcher.job is None and "highlighted" in launcher.status_line.value
    # fixing it clears the mark
    launcher.apply_preset("tutorial φ⁴ L=8")
    fill(launcher, {"gpus": 0, "cpus": 1, "project": "widgets-ci"}, extra="")
    assert launcher.errors == {} and not launcher.launch_button.disabled
    assert "lh-invalid" not in widget._dom_classes and launcher.field_errors[field].value == ""


def test_several_bad_fields_are_all_marked(launcher):
    fill(launcher, {"L": 3, "lr": -1.0, "kernel": 2})
    assert {"L", "lr", "kernel"} <= set(launcher.errors)


def test_the_couplings_follow_the_action(launcher):
    assert launcher._rows["beta"].layout.display == "none"
    assert launcher._rows["m2"].layout.display is None
    fill(launcher, {"action": "u1"})
    assert launcher._rows["beta"].layout.display is None
    assert launcher._rows["m2"].layout.display == "none"
    config = launcher.config()
    assert "beta" in config and "m2" not in config and "lam" not in config


def test_presets_and_clone_from_a_run(service, ann, launcher):
    launcher.preset.value = "U(1) L=8, β=2"
    assert launcher.fields["action"].value == "u1" and launcher.fields["L"].value == 8
    assert launcher.preset.value == "" and launcher.errors == {}
    project = ann.request("POST", "/projects", {"name": "clone-src", "group": "lqcd"})
    params = {"action": "phi4", "L": "12", "lr": "0.002", "hidden": "[4, 4]", "log_every": "7",
              "not_a_config_key": "x"}  # fmt: skip
    run = ann.request("POST", "/runs", {"project": project["id"], "name": "src", "params": params})
    launcher.clone_id.value = run["id"]
    launcher.clone_button.click()
    assert launcher.fields["L"].value == 12 and launcher.fields["lr"].value == 0.002
    assert launcher.fields["hidden"].value == "4, 4"
    assert json.loads(launcher.fields["extra"].value) == {"log_every": 7}
    assert launcher.fields["project"].value == "clone-src"
    assert "not_a_config_key" in launcher.status_line.value
    launcher.clone("0" * 32)
    assert "Not found" in launcher.status_line.value
    assert launcher.fields["L"].value == 12  # kept


def test_the_service_refusal_lands_on_the_field_without_flows(monkeypatch, launcher):
    # a kernel without flows: nothing is checked inline, the service's 400 is shown
    import widgets.launcher_state as module

    monkeypatch.setattr(module, "_flows_config", lambda: None)
    fill(launcher, {"L": 7})
    assert "L" not in launcher.errors and not launcher.launch_button.disabled
    assert launcher.launch() is None
    assert launcher.errors["L"].endswith("even L, got L=7")
    assert "even L" in launcher.status_line.value and launcher.fields["L"].value == 7


@pytest.fixture(scope="module")
def launched(service, ann):
    """One tiny training launched through the form's own button, watched to the end."""
    panel = TrainingLauncher(client=ann, project="widgets-ci")
    fill(panel, {**TINY_FORM, "name": "tiny <b>bold</b>"}, extra=TINY_EXTRA)
    assert panel.errors == {}
    panel.launch_button.click()
    assert panel.monitor is not None, panel.status_line.value
    assert panel.monitor.wait(120), panel.monitor.status_line.value
    yield panel
    panel.close()


@pytest.mark.slow
def test_launch_creates_a_job_and_run_and_becomes_the_monitor(service, launched):
    job, monitor = launched.job, launched.monitor
    assert isinstance(monitor, RunMonitor) and launched.children[0] is monitor
    assert monitor.run_id == job["run_id"] and monitor.job_id == job["id"]
    stored = service.wait_state(job["id"], {"FINISHED", "FAILED", "LOST"})
    stderr = job_workdir(service, job["id"]) / "stderr.log"
    assert stored["state"] == "FINISHED", stderr.read_text()
    run = service.store.get_run(job["run_id"])
    assert run.name == "tiny <b>bold</b>" and run.params["L"] == "4"
    assert json.loads(run.params["hidden"]) == [4]


@pytest.mark.slow
def test_the_monitor_reaches_finished_with_plot_progress_and_output(launched):
    monitor = launched.monitor
    assert monitor.status == "FINISHED" and monitor.done and not monitor.running
    assert "FINISHED" in monitor.status_line.value
    assert monitor.total == 20 and monitor.progress.value == monitor.progress.max == 20
    assert monitor.progress_text.value == "step 20 / 20"
    (output,) = monitor.plot.outputs
    assert output["data"]["image/png"] and "lh-plot" in monitor.plot._dom_classes
    assert [step for step, _ in monitor.metrics["loss"]] == [5, 10, 15, 20]
    assert {"ess", "acceptance"} <= set(monitor.metrics)
    texts = [text for _, text in monitor.lines]
    assert any("step 20/20" in t for t in texts)  # the progress lines (stderr)
    assert any('"checkpoint"' in t for t in texts)  # the summary line (stdout)
    assert "&quot;checkpoint&quot;" in monitor.output_log.value  # escaped
    assert monitor.cancel_button.disabled
    assert f"/runs/{monitor.run_id}" in monitor.title.value


@pytest.mark.slow
def test_a_new_monitor_after_the_end_shows_the_whole_history(ann, launched):
    first = launched.monitor
    again = RunMonitor(first.run_id, ann)  # e.g. after a kernel restart
    try:
        assert again.wait(30)
        assert again.status == "FINISHED" and again.progress.value == 20
        assert again.metrics["loss"] == first.metrics["loss"]
        assert again.lines[-5:] == first.lines[-5:]
        assert again.plot.outputs and again.job_id == first.job_id
    finally:
        again.close()


@pytest.mark.slow
def test_load_model_rebuilds_the_trained_flow(service, ann, launched):
    import torch

    from flows.models import build_flow
    from flows.train import load_checkpoint

    flow = load_model(launched.monitor.run_id, ann)
    assert not flow.training and flow.step == 20 and flow.config["L"] == 4
    ckpt = load_checkpoint(job_workdir(service, launched.job["id"]) / "out" / "checkpoint.pt")
    reference = build_flow(ckpt["config"])
    reference.load_state_dict(ckpt["model"])
    reference.eval()
    n_params = sum(p.numel() for p in reference.parameters())
    assert sum(p.numel() for p in flow.parameters()) == n_params
    with torch.no_grad():
        x, log_q = flow.sample(64, generator=torch.Generator().manual_seed(1))
        assert x.shape == (64, 4, 4)
        torch.testing.assert_close(flow.log_prob(x), reference.log_prob(x))
        torch.testing.assert_close(flow.log_prob(x), log_q, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_download_artifacts_to_a_directory(ann, launched, tmp_path):
    files = download_artifacts(launched.monitor.run_id, tmp_path / "out", ann)
    names = {p.relative_to(tmp_path / "out").as_posix() for p in files}
    assert {"model/checkpoint.pt", "summary.json"} <= names
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps"] == 20


@pytest.mark.slow
def test_back_to_the_form_keeps_the_values(launched):
    launched.back_to_form()
    assert launched.monitor is None and launched.fields["L"].value == 4
    assert launched.fields["name"].value == "tiny <b>bold</b>" and not launched.errors


def test_group_job_limit_429_is_a_readable_message_and_the_form_is_kept(job_env, tmp_path):
    limits = {"lqcd": {"executors": ["local"], "max_jobs": 1, "max_cpus": 2}}
    svc = Service(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"],
                        limits=limits)  # fmt: skip
    try:
        first = TrainingLauncher(client=client_for(svc), project="limited")
        fill(first, TINY_FORM, extra=TINY_EXTRA)
        assert first.launch() is not None
        second = TrainingLauncher(client=client_for(svc), project="limited")
        fill(second, {**TINY_FORM, "lr": 0.01, "name": "the second"}, extra=TINY_EXTRA)
        before = form_values(second)
        second.launch_button.click()
        assert second.monitor is None and second.error.status == 429
        message = second.status_line.value
        assert "Job limit reached" in message and "lqcd" in message and "1" in message
        assert "Traceback" not in message
        assert form_values(second) == before and second.children[0] is second._form[0]
        assert not second.launch_button.disabled  # may try again later
        first.monitor.cancel()
        assert first.monitor.wait(30) and first.monitor.status == "KILLED"
        second.launch_button.click()  # the slot is free again
        assert second.monitor is not None
        second.monitor.cancel()
        assert second.monitor.wait(30)
        first.close()
        second.close()
    finally:
        svc.stop()


def test_a_refused_token_shows_a_message_not_a_traceback(service):
    panel = TrainingLauncher(client=client_for(service, "tok-expired"), project="x")
    assert panel.error.status == 401
    assert "token was refused" in panel.status_line.value
    panel.fields["L"].value = 3  # still validated inline
    assert "L" in panel.errors
    panel.fields["L"].value = 8
    panel.launch_button.click()
    assert panel.monitor is None and "token was refused" in panel.status_line.value
    assert panel.fields["project"].value == "x"


def test_an_unreachable_service_shows_a_message():
    panel = TrainingLauncher(client=unreachable_client(), project="x")
    assert panel.error.status is None and "Cannot reach" in panel.status_line.value
    panel.launch_button.click()
    assert "Cannot reach" in panel.status_line.value


def test_no_service_in_the_environment(monkeypatch):
    for name in ("LATTICEHUB_TRACKING_URL", "JUPYTERHUB_API_URL"):
        monkeypatch.delenv(name, raising=False)
    panel = TrainingLauncher()
    assert "No experiments service configured" in panel.status_line.value
