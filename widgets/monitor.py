"""``RunMonitor(run_id)``: a run's status, progress, live metric plots and output, inline.

A background thread long-polls ``GET api/v1/runs/{id}/updates`` (docs/live.md) and
updates the widgets coarsely: at most two rounds a second, plots redrawn at most once a
second. The kernel is never blocked. The first round asks for the last lines of output
(``tail``) and the whole metric history (``metrics=1`` answers with ``reset``), so a
monitor made again after a kernel restart shows everything; later rounds pass the
cursors the service returned. The thread stops when the run has ended and everything
was read (``done``), when :meth:`RunMonitor.stop` or :meth:`RunMonitor.close` is called, or
on an error that retrying cannot fix (401, 403, 404). Unreachable service, 429 and 5xx are
retried with a growing pause, and say so in the status line.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from typing import Any

import ipywidgets as w

from latticehub.client import TrackingClient

from . import api
from .plots import LIVE_KEYS, show_figure, training_figure

#: Run states after which nothing changes.
FINAL = frozenset({"FINISHED", "FAILED", "KILLED", "LOST"})
#: Shortest time between two long-poll rounds, seconds (keeps widget traffic coarse).
MIN_INTERVAL_S = 0.5
#: Shortest time between two plot redraws, seconds.
REDRAW_S = 1.0
#: Longest pause between retries after a transient error, seconds.
MAX_BACKOFF_S = 30.0


def _steps(params: dict[str, str]) -> int | None:
    """The run's total steps from its ``steps`` param (``"600"``), if it has one."""
    try:
        return int(float(params["steps"]))
    except (KeyError, TypeError, ValueError):
        return None


class RunMonitor(w.VBox):
    """Live view of one run: status (with the batch system's reason), progress, plots, output.

    Args:
        run_id: the run to watch.
        client: the service client (default: from the notebook's environment).
        job: the job as ``POST api/v1/jobs`` returned it (else found from the run's
            ``latticehub.job_id`` tag); needed for the cancel button.
        tail: lines of output kept and shown.
        autostart: start the background thread at once.

    Attributes:
        run: the run as last received (``status``, ``status_reason``, ``params`` ...).
        status: the run's status (``QUEUED``, ``RUNNING``, ``FINISHED`` ...), "" before the
            first answer.
        step: the latest metric step seen; ``total``: the run's ``steps`` param.
        done: the run has ended and everything was received.
        error: the last :class:`~widgets.api.ServiceError`, if any.

    Example::

        from widgets import RunMonitor
        RunMonitor("3f2a...")          # again after a kernel restart: same view
    """

    def __init__(
        self,
        run_id: str,
        client: TrackingClient | None = None,
        *,
        job: dict | None = None,
        tail: int = 200,
        autostart: bool = True,
    ):
        super().__init__()
        self.add_class("lh-monitor")
        self.run_id = str(run_id)
        self.job: dict | None = job
        self.job_id: str | None = job["id"] if job else None
        self.run: dict[str, Any] = {}
        self.status = ""
        self.step = 0
        self.total: int | None = None
        self.done = False
        self.error: api.ServiceError | None = None
        self.timeline: list[dict] = []
        self.tail = tail
        self._series: dict[str, dict[int, float]] = {}
        self._lines: deque[tuple[str, str]] = deque(maxlen=tail)
        self._partial = {"stdout": "", "stderr": ""}
        self._cursor: dict[str, Any] | None = None
        self._dirty = False
        self._last_draw = 0.0
        self._log_shown = ""
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

        self.title = _html("lh-title")
        self.status_line = _html("lh-status")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="progress")
        self.progress.add_class("lh-progress")
        self.progress_text = _html("lh-progress-text")
        self.cancel_button = w.Button(
            description="Cancel job", button_style="danger", icon="stop", disabled=True
        )
        self.cancel_button.add_class("lh-cancel")
        self.cancel_button.on_click(self._on_cancel)
        self.plot = w.Output()
        self.plot.add_class("lh-plot")
        self.output_log = _html("lh-log")
        self.children = (
            self.title,
            self.status_line,
            w.HBox((self.progress, self.progress_text, self.cancel_button)),
            self.plot,
            self.output_log,
        )
        try:
            self.client = api.make_client(client)
        except api.ServiceError as e:
            self._fail(e)
            return
        self.title.value = (
            f"<b>Run</b> <code>{html.escape(self.run_id)}</code> · "
            f'<a href="{html.escape(api.dashboard_url(self.client, self.run_id))}" '
            'target="_blank" class="lh-dashboard-link">open in dashboard</a>'
        )
        self._show("connecting…", "busy")
        if autostart:
            self.start()

    # -- public ------------------------------------------------------------------------
    @property
    def metrics(self) -> dict[str, list[tuple[int, float]]]:
        """Metric key -> ``[(step, value)]`` received so far, sorted by step."""
        return {key: sorted(points.items()) for key, points in list(self._series.items())}

    @property
    def lines(self) -> list[tuple[str, str]]:
        """The last ``tail`` output lines as ``(stream, text)``."""
        return list(self._lines)

    @property
    def partial(self) -> dict[str, str]:
        """The unfinished last line of each stream (a progress bar still moving)."""
        return dict(self._partial)

    @property
    def running(self) -> bool:
        """Whether the background thread is polling."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start following the run (no-op when already started or after an error)."""
        if self._thread is not None or self._ended.is_set():
            return
        self._thread = threading.Thread(
            target=self._loop, name=f"lh-monitor-{self.run_id[:8]}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop following the run (the thread ends within one long-poll round)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the monitor has stopped (run done, error, stop); False on timeout."""
        return self._ended.wait(timeout)

    def close(self) -> None:
        """Stop the thread and close the widget with its parts."""
        self.stop()
        for child in (self.title, self.status_line, self.progress, self.progress_text,
                      self.cancel_button, self.plot, self.output_log):  # fmt: skip
            child.close()
        super().close()

    def cancel(self) -> None:
        """Cancel the run's job (``DELETE api/v1/jobs/{id}``); the outcome shows in the panel."""
        self._on_cancel(self.cancel_button)

    # -- polling -------------------------------------------------------------------------
    def _query(self) -> dict[str, Any]:
        if self._cursor is None:  # a fresh start: recent output and the whole history
            return {"tail": self.tail, "metrics": 1, "wait": 0}
        wait = api.long_poll_wait(self.client)
        if self._dirty:  # a plot waits for its redraw slot: come back in time for it
            wait = min(wait, max(0.0, REDRAW_S - (time.monotonic() - self._last_draw)) + 0.05)
        c = self._cursor
        return {"stdout": c["stdout"], "stderr": c["stderr"], "events": c["events"],
                "metrics": c.get("metrics") or 1, "wait": round(wait, 2),
                "partial_stdout": c.get("partial_stdout", 0),
                "partial_stderr": c.get("partial_stderr", 0)}  # fmt: skip

    def _loop(self) -> None:
        backoff = 1.0
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    body = api.run_updates(self.client, self.run_id, self._query())
                except api.ServiceError as e:
                    if self._stop.is_set():
                        return
                    self.error = e
                    if not e.transient:
                        self._fail(e)
                        return
                    self._show(f"{e.message} Retrying in {backoff:.0f} s.", "warn")
                    if self._stop.wait(backoff):
                        return
                    backoff = min(2 * backoff, MAX_BACKOFF_S)
                    continue
                backoff = 1.0
                if self._stop.is_set():
                    return
                self._apply(body)
                if self.done:
                    return
                rest = MIN_INTERVAL_S - (time.monotonic() - began)
                if rest > 0 and self._stop.wait(rest):
                    return
        except Exception as e:  # noqa: BLE001 - show a bug as a message, not a dead thread
            self._show(f"The monitor stopped: {type(e).__name__}: {e}", "error")
        finally:
            if not self._stop.is_set():
                self._draw(force=True)
            self._ended.set()

    def _apply(self, body: dict[str, Any]) -> None:
        run = body["run"]
        self.run, self.status, self._cursor = run, run["status"], body["cursor"]
        self.job_id = self.job_id or run.get("tags", {}).get("latticehub.job_id")
        if self.total is None:
            self.total = _steps(run.get("params", {}))
        metrics = body["metrics"]
        if metrics["reset"]:
            self._series = {}
        for point in metrics["points"]:
            step = int(point["step"])
            self._series.setdefault(point["key"], {})[step] = float(point["value"])
            self.step = max(self.step, step)
        self._dirty = self._dirty or bool(metrics["points"]) or metrics["reset"]
        fresh = [("stdout", x) for x in body["stdout"]["lines"]]
        fresh += [("stderr", x) for x in body["stderr"]["lines"]]
        fresh.sort(key=lambda item: item[1]["timestamp"])
        self._lines.extend((stream, line["text"]) for stream, line in fresh)
        for stream in ("stdout", "stderr"):
            self._partial[stream] = body[stream].get("partial", "")
        self.timeline.extend(body.get("timeline", []))
        if self.job_id and (self.job is None or body.get("timeline")):
            try:  # the batch system's reason ("pending: Resources", "running on node7")
                self.job = api.get_job(self.client, self.job_id)
            except api.ServiceError:
                pass  # the run's own status_reason is shown instead
        self.done = bool(body["done"])
        self._render()

    # -- rendering -----------------------------------------------------------------------
    def _render(self) -> None:
        status = self.status
        reason = self.run.get("status_reason") or ""
        job = self.job or {}
        if status == "QUEUED":
            reason = reason or job.get("reason") or ""
            level = "busy"
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
        self._show(f"{status}: {reason}" if reason else status, level)
        final = status in FINAL
        self.cancel_button.disabled = final or not self.job_id
        total = self.total
        self.progress.max = max(total or self.step, 1)
        self.progress.value = min(self.step, self.progress.max)
        self.progress.bar_style = (
            "success" if status == "FINISHED" else "danger" if final else "info"
        )
        self.progress_text.value = html.escape(
            f"step {self.step} / {total}" if total else f"step {self.step}"
        )
        self._render_log()
        self._draw(force=self.done)

    def _render_log(self) -> None:
        rows = [
            f'<span class="lh-{stream}"{_STDERR_STYLE if stream == "stderr" else ""}>'
            f"{html.escape(text)}</span>"
            for stream, text in self._lines
        ]
        rows += [
            f'<span class="lh-partial lh-{stream}" style="opacity:0.75">{html.escape(text)}</span>'
            for stream, text in self._partial.items()
            if text
        ]
        shown = "\n".join(rows) or '<span style="opacity:0.6">(no output yet)</span>'
        if shown != self._log_shown:
            self._log_shown = shown
            self.output_log.value = f'<pre class="lh-log-text" style="{_LOG_STYLE}">{shown}</pre>'

    def _draw(self, force: bool = False) -> None:
        if not self._dirty:
            return
        if not force and time.monotonic() - self._last_draw < REDRAW_S:
            return
        self._dirty = False
        self._last_draw = time.monotonic()
        series = self.metrics
        show_figure(self.plot, training_figure(series, LIVE_KEYS), f"metrics of {self.run_id}")

    def _show(self, message: str, level: str = "info") -> None:
        self.status_line.value = api.status_html(message, level)

    def _fail(self, error: api.ServiceError) -> None:
        self.error = error
        self._show(error.message, "error")
        self.cancel_button.disabled = True
        self._ended.set()

    def _on_cancel(self, _button: Any) -> None:
        if not self.job_id:
            self._show("This run was not launched as a job: there is nothing to cancel.", "warn")
            return
        self.cancel_button.disabled = True
        try:
            self.job = api.cancel_job(self.client, self.job_id)
        except api.ServiceError as e:
            self.error = e
            self._show(e.message, "error")
            self.cancel_button.disabled = e.status == 409
            return
        self._show(f"{self.status or 'QUEUED'}: {self.job.get('reason', 'cancelling')}", "warn")


_LOG_STYLE = (
    "max-height:18em;overflow:auto;font-size:11px;line-height:1.3;margin:0;"
    "padding:4px;background:#f6f8fa;white-space:pre-wrap"
)
_STDERR_STYLE = ' style="color:#8250df"'


def _html(css_class: str) -> w.HTML:
    widget = w.HTML()
    widget.add_class(css_class)
    return widget
