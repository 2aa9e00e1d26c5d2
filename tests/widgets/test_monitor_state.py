"""MonitorState without ipywidgets: folding long-poll rounds in, what the panel says, retries."""

from __future__ import annotations

import pytest

from latticehub.client import TrackingAPIError
from tests.widgets.conftest import fake_client
from widgets.api import ServiceError
from widgets.monitor_state import MAX_BACKOFF_S, MonitorState

RUN = "d" * 32


def round_(status="RUNNING", *, points=(), reset=False, stdout=(), stderr=(), partial="",
           timeline=(), done=False, params=None, tags=None, reason="", failure=None):  # fmt: skip
    run = {"id": RUN, "status": status, "status_reason": reason, "params": params or {},
           "tags": tags or {}, "failure": failure}  # fmt: skip
    return {
        "run": run,
        "cursor": {
            "stdout": len(stdout),
            "stderr": len(stderr),
            "events": len(timeline),
            "metrics": "m1",
        },  # fmt: skip
        "stdout": {"lines": [{"text": t, "timestamp": i} for i, t in stdout], "partial": partial},
        "stderr": {"lines": [{"text": t, "timestamp": i} for i, t in stderr], "partial": ""},
        "metrics": {
            "points": [{"key": k, "step": s, "value": v} for k, s, v in points],
            "reset": reset,
            "cursor": "m1",
        },  # fmt: skip
        "timeline": list(timeline),
        "done": done,
    }


def test_rounds_fold_into_series_lines_and_progress():
    client = fake_client()
    state = MonitorState(client, RUN, tail=3)
    state.apply(round_(points=[("loss", 5, 2.0), ("loss", 10, "NaN")], reset=True,
                       stdout=[(2, "b"), (0, "a")], stderr=[(1, "warn")], partial="50%",
                       params={"steps": "20"}))  # fmt: skip
    assert state.metrics["loss"][0] == (5, 2.0) and state.step == 10 and state.total == 20
    assert list(state.lines) == [("stdout", "a"), ("stderr", "warn"), ("stdout", "b")]
    assert state.partial["stdout"] == "50%" and state.dirty
    assert state.progress() == (10, 20, "info", "step 10 / 20")
    state.apply(round_(points=[("loss", 15, 1.0)], stdout=[(3, "c"), (4, "d")]))
    assert len(state.lines) == 3 and state.lines[-1] == ("stdout", "d")  # the tail only
    state.apply(round_(points=[("ess", 1, 0.5)], reset=True))
    assert set(state.metrics) == {"ess"}  # a reset starts the series again
    client.get_job.assert_not_called()  # not a job


def test_the_first_round_asks_for_the_tail_and_later_ones_follow_the_cursor():
    client = fake_client(run_updates=round_())
    state = MonitorState(client, RUN, tail=50)
    state.apply(state.fetch())
    client.run_updates.assert_called_with(RUN, None, wait=None, tail=50)
    state.fetch()
    args, kwargs = client.run_updates.call_args
    assert args == (RUN, round_()["cursor"]) and kwargs["wait"] == 25.0


@pytest.mark.parametrize(
    ("status", "reason", "job", "failure", "text", "level"),
    [
        ("QUEUED", "", {"reason": "pending: Resources", "state": "QUEUED"}, None,
         "QUEUED: pending: Resources", "busy"),
        ("QUEUED", "waiting", {"reason": "pending", "state": "QUEUED"}, None,
         "QUEUED: waiting", "busy"),
        ("RUNNING", "x", {"reason": "running on node7", "state": "RUNNING"}, None,
         "RUNNING: running on node7", "busy"),
        ("RUNNING", "", {"reason": "cancelling (by ann)", "state": "RUNNING"}, None,
         "RUNNING: cancelling (by ann)", "busy"),
        ("FINISHED", "", None, None, "FINISHED", "ok"),
        ("FAILED", "", None, {"message": "diverged"}, "FAILED: diverged", "error"),
        ("KILLED", "", {"reason": "cancelled by ann"}, None, "KILLED: cancelled by ann", "error"),
    ],
)  # fmt: skip
def test_headline(status, reason, job, failure, text, level):
    state = MonitorState(fake_client(), RUN, job={"id": "j", **(job or {})} if job else None)
    state.apply(round_(status, reason=reason, failure=failure))
    if job:
        state.job = {"id": "j", **job}  # as the job fetch would have it
    assert state.headline() == (text, level)
    assert state.can_cancel == (job is not None and status in ("QUEUED", "RUNNING"))


def test_the_job_is_found_from_the_tag_and_fetched_when_the_timeline_moves():
    client = fake_client(get_job={"id": "j1", "state": "RUNNING", "reason": "on node7"})
    state = MonitorState(client, RUN)
    state.apply(round_(tags={"latticehub.job_id": "j1"}))
    client.get_job.assert_called_once_with("j1")
    state.apply(round_(tags={"latticehub.job_id": "j1"}))
    assert client.get_job.call_count == 1  # nothing new on the timeline
    state.apply(round_(tags={"latticehub.job_id": "j1"}, timeline=[{"kind": "started"}]))
    assert client.get_job.call_count == 2 and state.timeline == [{"kind": "started"}]


def test_a_job_fetch_failure_leaves_the_runs_own_reason():
    client = fake_client(get_job=TrackingAPIError(503, "EXECUTOR_UNAVAILABLE", "off"))
    state = MonitorState(client, RUN, job={"id": "j1"})
    state.apply(round_("QUEUED", reason="in queue", timeline=[{"kind": "x"}]))
    assert state.headline() == ("QUEUED: in queue", "busy")


def test_cancel():
    client = fake_client(cancel_job={"id": "j1", "reason": "cancelling"})
    state = MonitorState(client, RUN, job={"id": "j1"})
    assert state.cancel()["reason"] == "cancelling"
    client.cancel_job.side_effect = TrackingAPIError(409, "CONFLICT", "ended")
    with pytest.raises(ServiceError) as caught:
        state.cancel()
    assert caught.value.status == 409 and "Not possible now" in caught.value.message
    with pytest.raises(ServiceError) as caught:
        MonitorState(client, RUN).cancel()
    assert caught.value.code == "NO_JOB"


@pytest.mark.parametrize(
    ("error", "pauses"),
    [
        (ServiceError("down", None, "UNREACHABLE"), [1, 2, 4, 8, 16, 30, 30]),
        (ServiceError("busy", 503), [1, 2, 4, 8, 16, 30, 30]),
        (ServiceError("gone", 404), [None] * 7),
        (ServiceError("token", 401), [None] * 7),
    ],
)
def test_retries_back_off_on_transient_errors_only(error, pauses):
    state = MonitorState(fake_client(), RUN)
    assert [state.retry_after(error) for _ in pauses] == pauses
    assert max(p or 0 for p in pauses) <= MAX_BACKOFF_S


def test_redraws_are_rate_limited(monkeypatch):
    import widgets.monitor_state as module

    now = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    state = MonitorState(fake_client(), RUN)
    assert not state.due_redraw()  # nothing new
    state.dirty = True
    assert state.due_redraw() and not state.dirty
    state.dirty = True
    now[0] += 0.5
    assert not state.due_redraw() and state.due_redraw(force=True)
    state.dirty, now[0] = True, now[0] + 1.0
    assert state.due_redraw()
    state.dirty = True
    assert state.wait_for() == pytest.approx(1.05)  # back in time for the next redraw
