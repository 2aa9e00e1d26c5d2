"""RunMonitor: live updates by long-poll, partial lines, cancel, errors, closing."""

from __future__ import annotations

import time

import pytest

import widgets.monitor as monitor_module
from tests.widgets.conftest import (
    TINY_EXTRA,
    TINY_FORM,
    client_for,
    fill,
    unreachable_client,
    wait_for,
)
from widgets import RunMonitor, TrainingLauncher


@pytest.fixture(scope="module")
def project(ann):
    return ann.request("POST", "/projects", {"name": "monitor-ci", "group": "lqcd"})


def new_run(ann, project, **body):
    return ann.request("POST", "/runs", {"project": project["id"], "name": "live", **body})


def log_metrics(ann, run_id, step, **values):
    metrics = [{"key": k, "value": v, "step": step} for k, v in values.items()]
    ann.request("POST", f"/runs/{run_id}/batch", {"metrics": metrics})


def test_updates_stream_in_until_the_run_ends(ann, project):
    run = new_run(ann, project, params={"steps": "30"})
    monitor = RunMonitor(run["id"], ann)
    try:
        wait_for(lambda: monitor.status == "RUNNING", 10, "first round")
        assert monitor.total == 30 and monitor.progress.max == 30
        assert monitor.cancel_button.disabled  # not a job: nothing to cancel
        log_metrics(ann, run["id"], 10, loss=2.0, ess=0.1, acceptance=0.2)
        lines = {"offset": 0, "lines": ["hello <b>world</b>"], "partial": "50%|###  |"}
        ann.request("POST", f"/runs/{run['id']}/logs/stderr", lines)
        wait_for(lambda: monitor.step == 10 and monitor.partial["stderr"], 10, "metrics + log")
        assert monitor.progress.value == 10 and monitor.progress_text.value == "step 10 / 30"
        wait_for(lambda: "hello" in monitor.output_log.value, 5, "log rendered")
        assert "hello &lt;b&gt;world&lt;/b&gt;" in monitor.output_log.value
        assert "50%|###  |" in monitor.output_log.value  # the moving progress bar
        wait_for(lambda: bool(monitor.plot.outputs), 5, "plot drawn")
        log_metrics(ann, run["id"], 30, loss=1.0, ess=0.3, acceptance=0.4)
        ann.request("PATCH", f"/runs/{run['id']}", {"status": "FAILED",
                    "status_reason": "diverged <at> step 30"})  # fmt: skip
        assert monitor.wait(10)
        assert monitor.status == "FAILED" and monitor.done and not monitor.running
        assert "diverged &lt;at&gt; step 30" in monitor.status_line.value
        assert monitor.metrics["loss"] == [(10, 2.0), (30, 1.0)]
        assert monitor.progress.value == 30 and monitor.progress.bar_style == "danger"
    finally:
        monitor.close()


def test_plots_are_redrawn_at_most_about_once_a_second(monkeypatch, ann, project):
    draws = []
    real = monitor_module.show_figure

    def counted(*args, **kwargs):
        draws.append(time.monotonic())
        real(*args, **kwargs)

    monkeypatch.setattr(monitor_module, "show_figure", counted)
    run = new_run(ann, project, params={"steps": "100"})
    monitor = RunMonitor(run["id"], ann)
    try:
        wait_for(lambda: monitor.status == "RUNNING", 10)
        began = time.monotonic()
        for step in range(1, 41):  # 40 points in ~2 s
            log_metrics(ann, run["id"], step, loss=1.0 / step)
            time.sleep(0.05)
        wait_for(lambda: monitor.step == 40, 10, "all points")
        wait_for(lambda: monitor.metrics["loss"][-1][0] == 40 and not monitor.state.dirty, 5)
        elapsed = time.monotonic() - began
        assert len(draws) <= elapsed / monitor_module.REDRAW_S + 2, (len(draws), elapsed)
        gaps = [b - a for a, b in zip(draws, draws[1:], strict=False)]
        assert all(g >= monitor_module.REDRAW_S * 0.9 for g in gaps), gaps
    finally:
        monitor.close()


def test_close_stops_the_thread_and_touches_nothing_after(ann, project):
    run = new_run(ann, project)
    monitor = RunMonitor(run["id"], ann)
    wait_for(lambda: monitor.status == "RUNNING", 10)
    monitor.close()
    log_metrics(ann, run["id"], 5, loss=1.0)  # wakes the pending long-poll
    assert monitor.wait(10) and not monitor.running
    assert monitor.step == 0


def test_unknown_run_unreachable_service_and_refused_token(service, ann, project):
    missing = RunMonitor("0" * 32, ann)
    assert missing.wait(10) and missing.error.status == 404
    assert "Not found" in missing.status_line.value
    bad = RunMonitor(new_run(ann, project)["id"], client_for(service, "tok-expired"))
    assert bad.wait(10) and "token was refused" in bad.status_line.value
    down = RunMonitor("0" * 32, unreachable_client())
    wait_for(lambda: "Cannot reach" in down.status_line.value, 10, "retry message")
    assert "Retrying" in down.status_line.value and down.running  # transient: keeps trying
    down.close()
    assert down.wait(5)


def test_another_groups_run_is_not_found(service, ann, project):
    run = new_run(ann, project)
    monitor = RunMonitor(run["id"], client_for(service, "tok-bob"))
    assert monitor.wait(10) and monitor.error.status == 404


@pytest.mark.slow
def test_cancel_button_kills_a_long_training(service, ann):
    launcher = TrainingLauncher(client=ann, project="monitor-ci")
    fill(launcher, {**TINY_FORM, "steps": 10**6, "name": "long"}, extra=TINY_EXTRA)
    monitor = launcher.launch()
    assert monitor is not None, launcher.status_line.value
    try:
        wait_for(lambda: monitor.step >= 5, 60, "training under way")
        assert monitor.status == "RUNNING" and not monitor.cancel_button.disabled
        assert monitor.total == 10**6
        monitor.cancel_button.click()
        assert "cancelling" in monitor.status_line.value
        assert monitor.wait(60), monitor.status_line.value
        assert monitor.status == "KILLED" and monitor.cancel_button.disabled
        assert service.wait_state(launcher.job["id"], {"KILLED", "FAILED"})["state"] == "KILLED"
        assert service.store.get_run(monitor.run_id).status.value == "KILLED"
        monitor.cancel()  # once more: the job has ended (409), said in the panel
        assert "Not possible now" in monitor.status_line.value
    finally:
        launcher.close()
