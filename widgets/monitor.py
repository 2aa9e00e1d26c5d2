"""``RunMonitor(run_id)``: a run's status, progress, live metric plots and output, inline.

A background thread long-polls ``GET api/v1/runs/{id}/updates`` (docs/live.md) and
updates the widgets coarsely: at most two rounds a second, plots redrawn at most once a
second. The kernel is never blocked. The first round asks for the last lines of output
(``tail``) and the whole metric history (``metrics=1`` answers with ``reset``), so a
monitor made again after a kernel restart shows everything; later rounds pass the
cursors the service returned. The thread stops when the run has ended and everything
was read (``done``), when :meth:`RunMonitor.stop` or :meth:`RunMonitor.close` is called, or
on an error that retrying cannot fix (401, 403, 404). Unreachable service, 429 and 5xx are
retried with a growing pause, and say so in the status line. What the rounds told (and
what to call on the client) is :class:`~widgets.monitor_state.MonitorState`; this module is
the view and its thread.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as w

from latticehub.client import TrackingClient

from . import api
from .monitor_state import (  # noqa: F401 - re-exported: their old home
    FINAL,
    MAX_BACKOFF_S,
    REDRAW_S,
    MonitorState,
    total_steps,
)
from .plots import LIVE_KEYS, show_figure, training_figure

#: Shortest time between two long-poll rounds, seconds (keeps widget traffic coarse).
MIN_INTERVAL_S = 0.5


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
        state: the :class:`~widgets.monitor_state.MonitorState` (``None`` without a client).
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
        self.tail = tail
        self.error: api.ServiceError | None = None
        self.state: MonitorState | None = None
        self._job = job
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
        self.state = MonitorState(self.client, self.run_id, job=job, tail=tail)
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
    def run(self) -> dict[str, Any]:
        """The run as last received."""
        return self.state.run if self.state else {}

    @property
    def status(self) -> str:
        """The run's status ("" before the first answer)."""
        return self.state.status if self.state else ""

    @property
    def step(self) -> int:
        """The latest metric step seen."""
        return self.state.step if self.state else 0

    @property
    def total(self) -> int | None:
        """The run's ``steps`` param, if it has one."""
        return self.state.total if self.state else None

    @property
    def done(self) -> bool:
        """Whether the run has ended and everything was received."""
        return self.state.done if self.state else False

    @property
    def job(self) -> dict | None:
        """The run's job, if it was launched as one."""
        return self.state.job if self.state else self._job

    @property
    def job_id(self) -> str | None:
        """The id of the run's job, if any."""
        return self.state.job_id if self.state else None

    @property
    def timeline(self) -> list[dict]:
        """The run's job events received so far."""
        return self.state.timeline if self.state else []

    @property
    def metrics(self) -> dict[str, list[tuple[int, float]]]:
        """Metric key -> ``[(step, value)]`` received so far, sorted by step."""
        return self.state.metrics if self.state else {}

    @property
    def lines(self) -> list[tuple[str, str]]:
        """The last ``tail`` output lines as ``(stream, text)``."""
        return list(self.state.lines) if self.state else []

    @property
    def partial(self) -> dict[str, str]:
        """The unfinished last line of each stream (a progress bar still moving)."""
        return dict(self.state.partial) if self.state else {"stdout": "", "stderr": ""}

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
    def _loop(self) -> None:
        state = self.state
        assert state is not None
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    body = state.fetch()
                except api.ServiceError as e:
                    if self._stop.is_set():
                        return
                    self.error = e
                    pause = state.retry_after(e)
                    if pause is None:
                        self._fail(e)
                        return
                    self._show(f"{e.message} Retrying in {pause:.0f} s.", "warn")
                    if self._stop.wait(pause):
                        return
                    continue
                if self._stop.is_set():
                    return  # closed while waiting: change nothing any more
                state.apply(body)
                self._render()
                if state.done:
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

    # -- rendering -----------------------------------------------------------------------
    def _render(self) -> None:
        state = self.state
        assert state is not None
        self._show(*state.headline())
        self.cancel_button.disabled = not state.can_cancel
        value, top, style, text = state.progress()
        self.progress.max = top
        self.progress.value = value
        self.progress.bar_style = style
        self.progress_text.value = html.escape(text)
        self._render_log()
        self._draw(force=state.done)

    def _render_log(self) -> None:
        rows = [
            f'<span class="lh-{stream}"{_STDERR_STYLE if stream == "stderr" else ""}>'
            f"{html.escape(text)}</span>"
            for stream, text in self.lines
        ]
        rows += [
            f'<span class="lh-partial lh-{stream}" style="opacity:0.75">{html.escape(text)}</span>'
            for stream, text in self.partial.items()
            if text
        ]
        shown = "\n".join(rows) or '<span style="opacity:0.6">(no output yet)</span>'
        if shown != self._log_shown:
            self._log_shown = shown
            self.output_log.value = f'<pre class="lh-log-text" style="{_LOG_STYLE}">{shown}</pre>'

    def _draw(self, force: bool = False) -> None:
        if self.state is None or not self.state.due_redraw(force):
            return
        show_figure(
            self.plot, training_figure(self.metrics, LIVE_KEYS), f"metrics of {self.run_id}"
        )

    def _show(self, message: str, level: str = "info") -> None:
        self.status_line.value = api.status_html(message, level)

    def _fail(self, error: api.ServiceError) -> None:
        self.error = error
        self._show(error.message, "error")
        self.cancel_button.disabled = True
        self._ended.set()

    def _on_cancel(self, _button: Any) -> None:
        if self.state is None:
            return
        self.cancel_button.disabled = True
        try:
            job = self.state.cancel()
        except api.ServiceError as e:
            if e.code == "NO_JOB":
                self._show(e.message, "warn")
                return
            self.error = e
            self._show(e.message, "error")
            self.cancel_button.disabled = e.status == 409
            return
        self._show(f"{self.status or 'QUEUED'}: {job.get('reason', 'cancelling')}", "warn")


_LOG_STYLE = (
    "max-height:18em;overflow:auto;font-size:11px;line-height:1.3;margin:0;"
    "padding:4px;background:#f6f8fa;white-space:pre-wrap"
)
_STDERR_STYLE = ' style="color:#8250df"'


def _html(css_class: str) -> w.HTML:
    widget = w.HTML()
    widget.add_class(css_class)
    return widget
