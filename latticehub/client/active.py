"""A run being recorded: :func:`start_run`, its background sender, output capture, spooling.

Metrics and output lines are queued in memory and sent by a background thread about once a
second (:data:`FLUSH_S`); params, tags and artifacts are written at once. When the service
cannot be reached, writes go to the run's spool file in order (:mod:`.spool`) and are sent
when it is back (or by ``latticehub sync``). Nothing is dropped: when a queue is full (the
loop logs faster than the sender drains), the logging call itself sends or spools what is
queued before it returns (back-pressure), and says so once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..columnar import CLIENT_BATCH_POINTS, batch_entry
from .api import TrackingClient
from .environment import code_version, environment
from .errors import TrackingAPIError
from .spool import Spool

#: Seconds between heartbeats (``$LATTICEHUB_HEARTBEAT_S``); the service marks a run LOST
#: after several are missed.
HEARTBEAT_S = float(os.environ.get("LATTICEHUB_HEARTBEAT_S", "30"))
#: Longest unfinished line kept (a progress bar that never ends its line).
MAX_PARTIAL_CHARS = 4096
#: Seconds between sends of the queued metrics and lines.
FLUSH_S = 1.0
#: Queued metric points at which the sender is woken before its second is up (a loop that
#: logs every step of a fast model fills a compact batch well within the second).
SEND_AT_POINTS = CLIENT_BATCH_POINTS
#: Queued metric points and lines at most; past them a logging call pushes back (sends or
#: spools the queue itself) instead of growing memory or dropping anything.
MAX_PENDING_METRICS = 500_000
MAX_PENDING_LINES = 50_000


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"model.hidden": "[8, 8]", ...}`` string params.

    >>> flatten({"L": 8, "model": {"hidden": [8, 8]}})
    {'L': '8', 'model.hidden': '[8, 8]'}
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


class _Tee:
    """A text stream that writes through and hands complete lines to the run."""

    def __init__(self, original: Any, sink: Any, partial_sink: Any = None):
        self.original, self.sink, self._partial = original, sink, ""
        self.partial_sink = partial_sink

    def write(self, text: str) -> int:
        self.original.write(text)
        data = self._partial + text
        *lines, self._partial = data.split("\n")
        for line in lines:
            # progress bars rewrite a line with \r: keep what is finally shown
            self.sink(_shown(line))
        if len(self._partial) > MAX_PARTIAL_CHARS:  # a bar that never ends its line
            self._partial = _shown(self._partial)[-MAX_PARTIAL_CHARS:]
        if self.partial_sink is not None:
            self.partial_sink(_shown(self._partial))
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno ...: the original's
        return getattr(self.original, name)

    def close_partial(self) -> None:
        if self._partial:
            self.sink(_shown(self._partial))
            self._partial = ""
            if self.partial_sink is not None:
                self.partial_sink("")


#: Log lines per request, and their bytes: well under the service's limits (10,000 lines a
#: request, 4 MiB a body), so that a burst of output is sent, never refused and lost.
LINES_PER_REQUEST = 5_000
LINE_BYTES_PER_REQUEST = 1024 * 1024


def _log_pieces(lines: list[str]) -> list[list[str]]:
    """``lines`` in order, split into the bodies of log requests.

    At most LINES_PER_REQUEST lines and about LINE_BYTES_PER_REQUEST bytes each (a longer
    single line goes alone); ``[[]]`` for no lines.
    """
    pieces: list[list[str]] = [[]]
    size = 0
    for line in lines:
        cost = len(line.encode("utf-8", "surrogatepass")) + 8
        if pieces[-1] and (
            len(pieces[-1]) >= LINES_PER_REQUEST or size + cost > LINE_BYTES_PER_REQUEST
        ):
            pieces.append([])
            size = 0
        pieces[-1].append(line)
        size += cost
    return pieces


def _shown(line: str) -> str:
    """What a terminal shows of a line rewritten with carriage returns."""
    parts = [part for part in line.split("\r") if part]
    return parts[-1] if parts else ""


class ActiveRun:
    """A run being recorded; use through :func:`start_run`."""

    def __init__(self, client: TrackingClient, run: dict, spool_dir: Path | None = None):
        self.client = client
        self.id: str = run["id"]
        self.info = run
        self._lock = threading.Lock()
        # queued points per key as columns: steps, values, timestamps (the compact batch)
        self._columns: dict[str, tuple[list[int], list[float], list[int]]] = {}
        self._pending = 0
        self._wake = threading.Event()
        self._send_at = min(SEND_AT_POINTS, MAX_PENDING_METRICS)
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._offsets = {"stdout": 0, "stderr": 0}
        # unfinished last lines (progress bars) and whether they changed since sent
        self._partials: dict[str, str] = {}
        self._partials_sent: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"tracking-{self.id[:8]}")
        self._thread.daemon = True
        #: points or lines dropped: always 0 (a full queue pushes back instead); kept for callers
        self.dropped = 0
        self.spool = Spool.for_run(self.id, spool_dir)
        self._warned = False
        # one flush at a time (the sender thread, a pushing-back logging call, finish): log
        # offsets are assigned and the spool is written in one order
        self._flush_lock = threading.RLock()
        self._pushed_back = False

    # -- logging API -------------------------------------------------------------------
    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Queue one metric point (sent within about a second; well under 2 µs a call)."""
        value, step = float(value), int(step)  # a tensor is read now, not kept
        stamp = int(time.time() * 1000)
        with self._lock:
            column = self._columns.get(key)
            if column is None:
                column = self._columns[key] = ([], [], [])
            column[0].append(step)
            column[1].append(value)
            column[2].append(stamp)
            self._pending += 1
            pending = self._pending
        if pending >= self._send_at:
            self._many_pending(pending)

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        """Queue several metrics of one step."""
        step = int(step)
        stamp = int(time.time() * 1000)
        points = [(key, float(value)) for key, value in values.items()]
        with self._lock:
            for key, value in points:
                column = self._columns.get(key)
                if column is None:
                    column = self._columns[key] = ([], [], [])
                column[0].append(step)
                column[1].append(value)
                column[2].append(stamp)
            self._pending += len(points)
            pending = self._pending
        if pending >= self._send_at:
            self._many_pending(pending)

    def _many_pending(self, pending: int) -> None:
        """Wake the sender; when even that cannot keep up, push back."""
        self._wake.set()
        if pending >= MAX_PENDING_METRICS:
            self._push_back()  # rare: the service is slower than the loop

    def log_params(self, params: dict[str, Any]) -> None:
        """Write parameters now (write-once)."""
        self.client.log_batch(self.id, params=flatten(params))

    def set_tags(self, tags: dict[str, str]) -> None:
        """Set tags now."""
        self.client.log_batch(self.id, tags=tags)

    def log_artifact(self, path: Path | str, name: str | None = None) -> None:
        """Upload a local file as an artifact of this run (default name: the file's name)."""
        path = Path(path)
        self.client.upload_artifact(self.id, name or path.name, path)

    def _partial(self, stream: str, text: str) -> None:
        with self._lock:
            self._partials[stream] = text

    def _line(self, stream: str, text: str) -> None:
        with self._lock:
            if len(self._lines[stream]) < MAX_PENDING_LINES:
                self._lines[stream].append(text)
                return
        self._push_back()
        with self._lock:
            self._lines[stream].append(text)

    def _push_back(self) -> None:
        """A queue is full: send (or spool) everything queued now, on the logging thread."""
        if not self._pushed_back:
            self._pushed_back = True
            print(
                "[latticehub] logging faster than the tracking service takes it: the logging "
                "call now waits while the queue is sent (or spooled); nothing is dropped",
                file=sys.__stderr__,
            )
        try:
            self.flush()
        except Exception as e:  # keep the queue either way; the sender retries it
            print(f"[latticehub] tracking write failed, will retry: {e}", file=sys.__stderr__)

    # -- background sending ---------------------------------------------------------------
    def _loop(self) -> None:
        last_beat = 0.0
        while not self._stop.is_set():
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            if self._stop.is_set():
                return  # finish flushes the rest
            try:
                self.flush()
                if time.monotonic() - last_beat > HEARTBEAT_S:
                    self.client.update_run(self.id, heartbeat=_now())
                    last_beat = time.monotonic()
            except (OSError, TrackingAPIError) as e:
                print(f"[latticehub] tracking write failed, will retry: {e}", file=sys.__stderr__)

    def flush(self) -> None:
        """Send queued metrics and log lines; spool them if the service is unreachable."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            columns, self._columns = self._columns, {}
            self._pending = 0
            lines = {k: v for k, v in self._lines.items() if v}
            self._lines = {"stdout": [], "stderr": []}
            partials = {
                k: v for k, v in self._partials.items() if v != self._partials_sent.get(k, "")
            }
            self._partials_sent.update(partials)
        ops: list[tuple[str, str, Any]] = [
            ("POST", f"/runs/{self.id}/metrics", {"metrics": body})
            for body in _column_bodies(columns)
        ]
        for stream in ("stdout", "stderr"):
            pending = lines.get(stream, [])
            if not pending and stream not in partials:
                continue
            pieces = _log_pieces(pending)
            for i, chunk in enumerate(pieces):
                # offsets are assigned here, so a later replay appends exactly once
                body: dict[str, Any] = {"offset": self._offsets[stream], "lines": chunk}
                if stream in partials and i == len(pieces) - 1:
                    body["partial"] = partials[stream]
                ops.append(("POST", f"/runs/{self.id}/logs/{stream}", body))
                self._offsets[stream] += len(chunk)
        self._send(ops)

    def _send(self, ops: list[tuple[str, str, Any]]) -> None:
        if self.spool.pending():
            self.spool.replay(self.client.request)
            if self.spool.pending():  # still unreachable: keep the order
                self.spool.append(ops)
                return
        for i, (method, path, body) in enumerate(ops):
            try:
                self.client.request(method, path, body)
            except (OSError, TrackingAPIError) as e:
                if isinstance(e, TrackingAPIError) and not e.transient:
                    # refused for good (e.g. a bad key): retrying cannot help, say it once
                    print(f"[latticehub] tracking refused a write: {e}", file=sys.__stderr__)
                    continue
                # unreachable or busy (429, 5xx): keep the rest in order, send it later
                self.spool.append(ops[i:])
                if not self._warned:
                    self._warned = True
                    print(
                        f"[latticehub] tracking service unreachable or busy ({e}); writes are "
                        f"kept in {self.spool.path} and sent when it is back (or: latticehub sync "
                        f"{self.spool.path.parent})",
                        file=sys.__stderr__,
                    )
                return

    def finish(self, status: str, failure: dict | None = None) -> None:
        """Stop the sender, flush everything and set the final status."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.flush()
        body: dict[str, Any] = {"status": status, "end_time": _now()}
        if failure:
            body["failure"] = failure
        with self._flush_lock:
            self._send([("PATCH", f"/runs/{self.id}", body)])


def _column_bodies(
    columns: dict[str, tuple[list[int], list[float], list[int]]],
) -> list[list[dict[str, Any]]]:
    """Queued columns as compact batch bodies of at most :data:`SEND_AT_POINTS` points each."""
    bodies: list[list[dict[str, Any]]] = []
    body: list[dict[str, Any]] = []
    room = SEND_AT_POINTS
    for key, (steps, values, stamps) in columns.items():
        start = 0
        while start < len(steps):
            end = min(len(steps), start + room)
            body.append(batch_entry(key, steps[start:end], values[start:end], stamps[start:end]))
            room -= end - start
            start = end
            if not room:
                bodies.append(body)
                body, room = [], SEND_AT_POINTS
    if body:
        bodies.append(body)
    return bodies


def _now() -> int:
    return int(time.time() * 1000)


@contextmanager
def start_run(
    project: str,
    config: dict | None = None,
    *,
    name: str = "",
    group: str | None = None,
    run_id: str | None = None,
    capture_output: bool = True,
    client: TrackingClient | None = None,
    spool_dir: Path | None = None,
) -> Iterator[ActiveRun]:
    """Record a run: config as params, code version, environment, output, status.

    Args:
        project: project name (created in ``group`` if missing; default group
            ``$LATTICEHUB_GROUP``, which the spawner sets in user containers).
        config: hyperparameters; nested dicts become dotted keys.
        name: run name.
        group: group of a new project.
        run_id: attach to an existing run (e.g. one created QUEUED by a job).
        capture_output: tee stdout/stderr lines into the run's logs.
        client: a :class:`TrackingClient` (default: from the environment).
        spool_dir: where writes wait while the service is unreachable (default
            ``$LATTICEHUB_SPOOL_DIR`` or ``~/.latticehub/spool``).

    On an exception the traceback is recorded and the run FAILED; SIGTERM (Slurm cancel
    or time limit) marks it KILLED; otherwise FINISHED.
    """
    client = client or TrackingClient()
    if run_id:
        run = client.update_run(run_id, status="RUNNING")
    else:
        proj = client.project(project, group or os.environ.get("LATTICEHUB_GROUP"))
        run = client.create_run(proj["id"], name=name)
    active = ActiveRun(client, run, spool_dir)
    if config:
        active.log_params(config)
    client.update_run(active.id, code=code_version(), environment=environment(), heartbeat=_now())
    tees: list[_Tee] = []
    saved = (sys.stdout, sys.stderr)
    if capture_output:
        tees = [
            _Tee(
                sys.stdout,
                lambda line: active._line("stdout", line),
                lambda text: active._partial("stdout", text),
            ),
            _Tee(
                sys.stderr,
                lambda line: active._line("stderr", line),
                lambda text: active._partial("stderr", text),
            ),
        ]
        sys.stdout, sys.stderr = tees
    previous_term = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    if in_main:
        signal.signal(signal.SIGTERM, on_term)
    active._thread.start()
    status = "FINISHED"
    failure: dict[str, Any] | None = None
    try:
        yield active
    except KeyboardInterrupt as e:
        status = "KILLED"
        failure = {"type": "KeyboardInterrupt", "message": str(e) or "interrupted"}
        raise
    except BaseException as e:
        status = "FAILED"
        failure = {
            "type": type(e).__name__,
            "message": str(e),
            "traceback": traceback.format_exc(),
            "exit_code": e.code if isinstance(e, SystemExit) else 1,
        }
        raise
    finally:
        for tee in tees:
            tee.close_partial()
        sys.stdout, sys.stderr = saved
        if in_main:
            signal.signal(signal.SIGTERM, previous_term)
        active.finish(status, failure)
