"""The run monitor's state (no ipywidgets): what the long-poll rounds told about one run.

:class:`MonitorState` asks the client for the next round (``client.run_updates``), folds the
answer into the run, the metric series, the tail of the output and the timeline, fetches
the run's job when the timeline moved, cancels the job, and says what the panel shows:
the status line (:meth:`MonitorState.headline`), the progress (:meth:`MonitorState.progress`)
and how long to wait after an error (:meth:`MonitorState.retry_after`).
:mod:`widgets.monitor` is its view (and runs the polling thread).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from latticehub.client import TrackingClient

from .api import ServiceError, service_errors

#: Run states after which nothing changes.
FINAL = frozenset({"FINISHED", "FAILED", "KILLED", "LOST"})
#: Shortest time between two plot redraws, seconds.
REDRAW_S = 1.0
#: Longest pause between retries after a transient error, seconds.
MAX_BACKOFF_S = 30.0


def total_steps(params: dict[str, str]) -> int | None:
    """The run's total steps from its ``steps`` param (``"600"``), if it has one.

    >>> total_steps({"steps": "600"}), total_steps({"steps": "x"}), total_steps({})
    (600, None, None)
    """
    try:
        return int(float(params["steps"]))
    except (KeyError, TypeError, ValueError):
        return None


class MonitorState:
    """What is known of one run, and the calls that learn more.

    Args:
        client: the service client.
        run_id: the run.
        job: the job as ``POST api/v1/jobs`` returned it (else found from the run's
            ``latticehub.job_id`` tag).
        tail: lines of output kept.

    Attributes:
        run: the run as last received; ``status``: its status ("" before the first round).
        step: the latest metric step seen; ``total``: the run's ``steps`` param.
        series: metric key -> step -> value.
        lines: the last ``tail`` output lines as ``(stream, text)``.
        partial: the unfinished last line of each stream.
        timeline: the run's job events received so far.
        job, job_id: the run's job, if it was launched as one.
        cursor: where the next round starts (``None``: from the start).
        done: the run has ended and everything was received.
        dirty: metrics arrived since the plot was last drawn.
    """

    def __init__(
        self,
        client: TrackingClient,
        run_id: str,
        *,
        job: dict[str, Any] | None = None,
        tail: int = 200,
    ):
        self.client, self.run_id, self.tail = client, str(run_id), tail
        self.job: dict[str, Any] | None = job
        self.job_id: str | None = job["id"] if job else None
        self.run: dict[str, Any] = {}
        self.status = ""
        self.step = 0
        self.total: int | None = None
        self.series: dict[str, dict[int, float]] = {}
        self.lines: deque[tuple[str, str]] = deque(maxlen=tail)
        self.partial = {"stdout": "", "stderr": ""}
        self.timeline: list[dict[str, Any]] = []
        self.cursor: dict[str, Any] | None = None
        self.done = False
        self.dirty = False
        self.last_draw = 0.0
        self.backoff = 1.0

    # -- asking ----------------------------------------------------------------------------
    def wait_for(self) -> float:
        """The long-poll ``wait`` of the next round: back in time for a pending redraw."""
        wait = self.client.long_poll_wait()
        if self.dirty:
            wait = min(wait, max(0.0, REDRAW_S - (time.monotonic() - self.last_draw)) + 0.05)
        return wait

    def fetch(self) -> dict[str, Any]:
        """One round (``GET api/v1/runs/{id}/updates``); pass the answer to :meth:`apply`.

        Raises:
            ServiceError: the round failed (see :meth:`retry_after`).
        """
        wait = None if self.cursor is None else self.wait_for()
        with service_errors(self.client):
            body = self.client.run_updates(self.run_id, self.cursor, wait=wait, tail=self.tail)
        self.backoff = 1.0
        return body

    def retry_after(self, error: ServiceError) -> float | None:
        """Seconds to wait before retrying after ``error`` (growing), ``None``: give up."""
        if not error.transient:
            return None
        pause, self.backoff = self.backoff, min(2 * self.backoff, MAX_BACKOFF_S)
        return pause

    def apply(self, body: dict[str, Any]) -> None:
        """Fold one round's answer in (and fetch the job when its timeline moved)."""
        run = body["run"]
        self.run, self.status, self.cursor = run, run["status"], body["cursor"]
        self.job_id = self.job_id or run.get("tags", {}).get("latticehub.job_id")
        if self.total is None:
            self.total = total_steps(run.get("params", {}))
        metrics = body["metrics"]
        if metrics["reset"]:
            self.series = {}
        for point in metrics["points"]:
            step = int(point["step"])
            self.series.setdefault(point["key"], {})[step] = float(point["value"])
            self.step = max(self.step, step)
        self.dirty = self.dirty or bool(metrics["points"]) or metrics["reset"]
        fresh = [("stdout", x) for x in body["stdout"]["lines"]]
        fresh += [("stderr", x) for x in body["stderr"]["lines"]]
        fresh.sort(key=lambda item: item[1]["timestamp"])
        self.lines.extend((stream, line["text"]) for stream, line in fresh)
        for stream in ("stdout", "stderr"):
            self.partial[stream] = body[stream].get("partial", "")
        self.timeline.extend(body.get("timeline", []))
        if self.job_id and (self.job is None or body.get("timeline")):
            try:  # the batch system's reason ("pending: Resources", "running on node7")
                with service_errors(self.client):
                    self.job = self.client.get_job(self.job_id)
            except ServiceError:
                pass  # the run's own status_reason is shown instead
        self.done = bool(body["done"])

    def cancel(self) -> dict[str, Any]:
        """Cancel the run's job (``DELETE api/v1/jobs/{id}``); the job, now cancelling.

        Raises:
            ServiceError: refused (409 once it has ended) or unreachable; or, code
                ``NO_JOB``, the run was not launched as a job.
        """
        if not self.job_id:
            raise ServiceError(
                "This run was not launched as a job: there is nothing to cancel.", None, "NO_JOB"
            )
        with service_errors(self.client):
            self.job = self.client.cancel_job(self.job_id)
        return self.job

    # -- telling ---------------------------------------------------------------------------
    @property
    def metrics(self) -> dict[str, list[tuple[int, float]]]:
        """Metric key -> ``[(step, value)]`` received so far, sorted by step."""
        return {key: sorted(points.items()) for key, points in list(self.series.items())}

    @property
    def final(self) -> bool:
        """Whether the run has ended."""
        return self.status in FINAL

    @property
    def can_cancel(self) -> bool:
        """Whether Cancel makes sense: a job that has not ended."""
        return bool(self.job_id) and not self.final

    def headline(self) -> tuple[str, str]:
        """The status line: ``(text, level)``, e.g. ``("QUEUED: pending: Resources", "busy")``.

        While queued: the run's reason or the job's; while running: the job's; at the end the
        run's reason or failure message; a cancel in progress says so.
        """
        status = self.status
        reason = self.run.get("status_reason") or ""
        job = self.job or {}
        if status == "QUEUED":
            reason, level = reason or job.get("reason") or "", "busy"
        elif status == "RUNNING":
            reason = job.get("reason") if job.get("state") == "RUNNING" else reason
            level = "busy"
        elif status == "FINISHED":
            level = "ok"
        else:
            failure = self.run.get("failure") or {}
            reason = reason or failure.get("message") or job.get("reason") or ""
            level = "error"
        if job.get("reason", "").startswith("cancelling") and status not in FINAL:
            reason = job["reason"]
        return (f"{status}: {reason}" if reason else status), level

    def progress(self) -> tuple[int, int, str, str]:
        """``(value, max, bar style, text)`` of the progress bar (``"step 5 / 20"``)."""
        total = self.total
        top = max(total or self.step, 1)
        style = "success" if self.status == "FINISHED" else "danger" if self.final else "info"
        text = f"step {self.step} / {total}" if total else f"step {self.step}"
        return min(self.step, top), top, style, text

    def due_redraw(self, force: bool = False) -> bool:
        """Whether to draw the plot now (at most once per :data:`REDRAW_S`; counted if so)."""
        if not self.dirty:
            return False
        if not force and time.monotonic() - self.last_draw < REDRAW_S:
            return False
        self.dirty, self.last_draw = False, time.monotonic()
        return True
