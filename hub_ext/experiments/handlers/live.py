"""Live streams of a run: server-sent events (``/stream``) and long-poll (``/updates``).

Both read what is new since the caller's cursors (log offsets per stream, a metric cursor,
a timeline offset) from the store and the change feed, and wait on the feed when nothing is.
A reader holds no buffer of its own: memory per stream is bounded whatever the number of
readers. The SSE ``id`` of each event carries all cursors, so a browser's ``EventSource``
resumes after a reconnect from where it was (``Last-Event-ID``).

An open stream checks at least every :attr:`~..live.LiveConfig.access_recheck_interval`
seconds that its reader may still read the run (identity and groups as fresh as every
request's), and ends with a reason when not; each user holds at most
:attr:`~..live.LiveConfig.max_streams_per_user` streams at once (429 beyond).
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from jupyterhub.services.auth import HubAuth, UserNotAllowed
from tornado.iostream import StreamClosedError

from latticehub.thinning import thin_indices

from ..access import can_read_project
from ..live import LiveBus, StreamSlot
from ..serialize import log_line, metric
from ..serialize import run as run_json
from ..store.entities import Run, Viewer
from ..store.errors import PERMISSION_DENIED, REQUEST_LIMIT_EXCEEDED, TrackingError, invalid
from .base import BaseHandler
from .schemas import PathItems, Query, operation, ref

STREAMS = ("stdout", "stderr")
#: Lines per stream and event; a reader far behind gets several events in a row.
LINES_PER_EVENT = 500
#: Metric points per key sent as history when a reader (re)starts its plot.
HISTORY_POINTS = 2000
#: Seconds between keep-alive comments (proxies close idle connections).
KEEPALIVE_S = 15.0
#: Seconds an SSE response lasts before the client is asked to reconnect (frees the slot).
MAX_STREAM_S = 900.0
#: Longest long-poll wait in seconds.
MAX_WAIT_S = 60.0


@dataclass
class Cursor:
    """Where a reader is: next log offsets, metric cursor, timeline entries seen."""

    offsets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    metrics: str | None = None
    events: int = 0
    partial: dict[str, str] = field(default_factory=dict)
    partial_seq: dict[str, int] = field(default_factory=dict)
    run_state: tuple = ()
    #: topic counters (LiveBus.topic_versions) at the last read; None: read everything
    seen: dict[str, int] | None = None
    cached_run: Run | None = None

    def event_id(self) -> str:
        """The SSE id: ``stdout.stderr.events.metric-cursor``."""
        logs = f"{self.offsets['stdout']}.{self.offsets['stderr']}"
        return f"{logs}.{self.events}.{self.metrics or ''}"

    @classmethod
    def parse_event_id(cls, raw: str) -> Cursor | None:
        """A cursor from ``Last-Event-ID`` (None if it is not one of ours)."""
        parts = raw.split(".", 3)
        if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
            return None
        return cls(
            offsets={"stdout": int(parts[0]), "stderr": int(parts[1])},
            events=int(parts[2]),
            metrics=parts[3] or None,
        )


def _state(run: Run) -> tuple:
    return (run.status.value, run.status_reason, run.end_time, run.name)


def _decimate(points: list, limit: int) -> list:
    """At most ``limit`` metric points, each bucket's lowest and highest (no spike hidden)."""
    return [points[i] for i in thin_indices([p.value for p in points], limit)]


class LiveBase(BaseHandler):
    """Collects what is new for a reader; holds the reader's stream slot; re-checks access."""

    slot: StreamSlot | None = None
    _closed = False

    @property
    def bus(self) -> LiveBus:
        """The change feed, injected through settings."""
        return self.settings["live"]

    def take_slot(self) -> None:
        """Count this stream against the caller's open streams; 429 when they hold the most."""
        name = self.viewer.name
        self.slot = self.bus.open_stream(name)
        if self.slot is None:
            limit = self.bus.config.max_streams_per_user
            raise TrackingError(
                f"{name} already holds {limit} open live streams, the most one user may "
                f"(LiveConfig.max_streams_per_user = {limit}): close a dashboard tab or a "
                "notebook monitor you no longer watch, then try again (a closed stream frees "
                "its slot at once)",
                REQUEST_LIMIT_EXCEEDED,
            )

    def release_slot(self) -> None:
        """Free the stream slot (idempotent)."""
        if self.slot is not None:
            self.slot.release()

    def on_connection_close(self) -> None:
        """The reader went away: free its slot now, and let the loop end."""
        self._closed = True
        self.release_slot()
        super().on_connection_close()

    def on_finish(self) -> None:
        """Free the slot when the response ends."""
        self.release_slot()
        super().on_finish()

    async def access_ended(self, run_id: str) -> str | None:
        """Why the reader may no longer read the run; None while they still may.

        A Hub user is identified again from the request's token or cookie, through the same
        caches every request goes through (so a removal from a group shows here within
        ``access.MEMBERSHIP_MAX_AGE_S``); the run's project is read again (unshared,
        deleted or moved on since the stream began).
        """
        viewer = self.viewer
        if viewer.run_id is None:  # a job token is bound to its run for the job's life
            model = await self.identify_again()
            if not model or model.get("name") != viewer.name:
                return "your Hub login or token is no longer valid: log in again"
            viewer = Viewer(
                name=viewer.name,
                groups=frozenset(await self.groups_of(model)),
                admin=bool(model.get("admin")),
            )
        try:
            project = self.store.get_project(self.store.get_run(run_id, data=False).project_id)
        except TrackingError:
            return f"run {run_id} no longer exists"
        if not can_read_project(viewer, project):
            return (
                f"you may no longer read run {run_id}: you left the group that gave you access, "
                "or the project stopped being shared with it"
            )
        return None

    async def identify_again(self) -> dict[str, Any] | None:
        """The caller's Hub model as of now (None: the token or session is no longer valid)."""
        auth = self.hub_auth
        if hasattr(self, "_cached_hub_user"):
            del self._cached_hub_user  # HubAuth's per-request memo of the first lookup
        if not isinstance(auth, HubAuth):  # a stand-in (tests): it answers synchronously
            model = auth.get_user(self)
            return await model if inspect.isawaitable(model) else model
        model = await auth.get_user(self, sync=False)
        if not model:
            return None
        try:
            return self.check_hub_user(model)  # still allowed to use this service
        except UserNotAllowed:
            return None

    def recheck_interval(self) -> float:
        """Seconds between access checks of an open stream."""
        return self.bus.config.access_recheck_interval

    def start_cursor(self, run_id: str) -> tuple[Cursor, bool, bool]:
        """The reader's cursor from ``Last-Event-ID`` or the query; and what it wants.

        Query: ``stdout``/``stderr`` (offsets), ``tail`` (start at the last n lines),
        ``metrics`` (1: also stream metric points; or a cursor to resume), ``events``.
        """
        want_metrics = self.get_argument("metrics", "0") not in ("0", "", "false")
        want_logs = self.get_argument("logs", "1") not in ("0", "false")
        resumed = Cursor.parse_event_id(self.request.headers.get("Last-Event-ID", ""))
        if resumed is not None:
            return resumed, want_logs, want_metrics
        cursor = Cursor()
        try:
            tail = self.get_argument("tail", None)
            for stream in STREAMS:
                if tail is not None:
                    n = int(tail)
                    if n < 0:
                        raise ValueError
                    count = self.store.log_count(run_id, stream)
                    cursor.offsets[stream] = max(0, count - n)
                else:
                    cursor.offsets[stream] = int(self.get_argument(stream, "0"))
                if cursor.offsets[stream] < 0:
                    raise ValueError
            cursor.events = int(self.get_argument("events", "0"))
            for stream in STREAMS:
                cursor.partial_seq[stream] = int(self.get_argument(f"partial_{stream}", "0"))
        except ValueError:
            raise invalid(
                "stdout, stderr, tail, events and partial_* must be non-negative integers "
                "(line offsets, e.g. ?stdout=120&stderr=0, or ?tail=200)"
            ) from None
        raw = self.get_argument("metrics", "0")
        cursor.metrics = raw if "-" in raw else None
        return cursor, want_logs, want_metrics

    def collect(
        self, run_id: str, cursor: Cursor, *, logs: bool, metrics: bool
    ) -> tuple[list[tuple[str, Any]], Run]:
        """``(events, run)``: ``(name, data)`` pairs of what is new; advances ``cursor``."""
        out: list[tuple[str, Any]] = []
        version = self.bus.version(run_id)

        def shared(key: Any, compute: Any) -> Any:
            return self.bus.memo(run_id, version, key, compute)

        topics = self.bus.topic_versions(run_id)
        seen, cursor.seen = cursor.seen, topics

        def changed(topic: str) -> bool:
            return seen is None or topics.get(topic, 0) != seen.get(topic, 0)

        if changed("run") or cursor.cached_run is None:
            cursor.cached_run = shared("run", lambda: self.store.get_run(run_id))
        run = cursor.cached_run
        if _state(run) != cursor.run_state:
            cursor.run_state = _state(run)
            out.append(("run", run_json(run)))
        if logs:
            for stream in STREAMS:
                if not changed(stream):
                    lines = []
                else:
                    offset = cursor.offsets[stream]
                    lines = shared(
                        (stream, offset),
                        lambda s=stream, o=offset: self.store.read_logs(
                            run_id, s, offset=o, limit=LINES_PER_EVENT
                        ),
                    )
                if len(lines) == LINES_PER_EVENT:
                    cursor.seen[stream] = -1  # a backlog: read this stream again next round
                if lines:
                    cursor.offsets[stream] = lines[-1].offset + 1
                    out.append(
                        ("log", {"stream": stream, "lines": [log_line(x) for x in lines],
                                 "next_offset": cursor.offsets[stream]})
                    )  # fmt: skip
                seq, partial = self.bus.partial(run_id, stream)
                if seq != cursor.partial_seq.get(stream, 0):
                    cursor.partial_seq[stream] = seq
                    cursor.partial[stream] = partial
                    out.append(("partial", {"stream": stream, "text": partial}))
        if metrics:
            points, cursor.metrics, reset = self.bus.metrics_since(run_id, cursor.metrics)
            if reset:
                points = shared("history", lambda: self._history(run))
            if points or reset:
                update = {"points": points, "cursor": cursor.metrics, "reset": reset}
                out.append(("metrics", update))
        events = self.settings.get("events")
        if events is not None and changed("timeline"):
            timeline = shared("timeline", lambda: events.list_events(run_id))
            if len(timeline) > cursor.events:
                fresh = [asdict(e) for e in timeline[cursor.events :]]
                cursor.events = len(timeline)
                out.append(("timeline", {"items": fresh, "next": cursor.events}))
        return out, run

    def _history(self, run: Run) -> list[dict]:
        points: list[dict] = []
        for key in sorted(run.metrics):
            history = self.store.get_metric_history(run.id, key, limit=50 * HISTORY_POINTS)
            points.extend(metric(m) for m in _decimate(history, HISTORY_POINTS))
        return points

    @staticmethod
    def drained(events: list[tuple[str, Any]]) -> bool:
        """Whether a round found no full page of lines (the reader has caught up)."""
        return not any(
            name == "log" and len(data["lines"]) == LINES_PER_EVENT for name, data in events
        )


class RunStreamHandler(LiveBase):
    """``/api/v1/runs/{id}/stream``: server-sent events until the run ends."""

    async def get(self, run_id: str) -> None:
        """Events ``run``, ``log``, ``partial``, ``metrics``, ``timeline`` and finally ``end``.

        ``end`` carries ``{"reason": "finished"}`` when the run ended and everything was
        sent, or ``{"reason": "access_revoked", "message"}`` when the reader lost access.
        """
        self.find_run(run_id)
        cursor, logs, metrics = self.start_cursor(run_id)
        self.take_slot()
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # no proxy buffering
        deadline = time.monotonic() + MAX_STREAM_S
        interval = self.recheck_interval()
        next_check = time.monotonic() + interval
        try:
            self.write("retry: 2000\n\n")
            while not self._closed and time.monotonic() < deadline:
                if time.monotonic() >= next_check:
                    reason = await self.access_ended(run_id)
                    if reason is not None:
                        ended = {"reason": "access_revoked", "message": reason}
                        self.write(f"event: end\ndata: {json.dumps(ended)}\n\n")
                        await self.flush()
                        break
                    next_check = time.monotonic() + interval
                version = self.bus.version(run_id)
                events, run = self.collect(run_id, cursor, logs=logs, metrics=metrics)
                ident = cursor.event_id()
                for name, data in events:
                    self.write(f"id: {ident}\nevent: {name}\ndata: {json.dumps(data)}\n\n")
                if run.status.is_final and self.drained(events):
                    ended = {"reason": "finished"}
                    self.write(f"id: {ident}\nevent: end\ndata: {json.dumps(ended)}\n\n")
                    await self.flush()
                    break
                await self.flush()
                if events and not self.drained(events):
                    continue  # more lines are waiting: send them before sleeping
                wait = max(0.0, min(KEEPALIVE_S, next_check - time.monotonic()))
                if not await self.bus.wait(run_id, version, wait):
                    self.write(": keepalive\n\n")
                    await self.flush()
        except StreamClosedError:
            return
        if not self._closed:
            self.finish()


class RunUpdatesHandler(LiveBase):
    """``/api/v1/runs/{id}/updates``: one long-poll round as JSON."""

    async def get(self, run_id: str) -> None:
        """What is new since the cursors, waiting up to ``wait`` seconds for something.

        A reader who loses access while waiting gets 403 with the reason.
        """
        self.find_run(run_id)
        cursor, logs, metrics = self.start_cursor(run_id)
        try:
            wait = float(self.get_argument("wait", "25"))
        except ValueError:
            raise invalid(f"wait must be seconds, 0..{MAX_WAIT_S:g}") from None
        if not 0 <= wait <= MAX_WAIT_S:
            raise invalid(f"wait must be seconds, 0..{MAX_WAIT_S:g}, not {wait:g}")
        self.take_slot()
        deadline = time.monotonic() + wait
        interval = self.recheck_interval()
        next_check = time.monotonic() + interval
        gathered: list[tuple[str, Any]] = []
        first = True
        while True:
            if time.monotonic() >= next_check:
                reason = await self.access_ended(run_id)
                if reason is not None:
                    raise TrackingError(reason, PERMISSION_DENIED)
                next_check = time.monotonic() + interval
            version = self.bus.version(run_id)
            events, run = self.collect(run_id, cursor, logs=logs, metrics=metrics)
            gathered.extend(events)
            # the first round always reports the run itself: that alone is not news
            news = [e for e in events if not (first and e[0] == "run")]
            first = False
            left = deadline - time.monotonic()
            if news or run.status.is_final or left <= 0 or self._closed:
                break
            await self.bus.wait(run_id, version, min(left, max(0.0, next_check - time.monotonic())))
        body: dict[str, Any] = {"run": run_json(run), "cursor": self._cursor_json(cursor)}
        for stream in STREAMS:
            body[stream] = {"lines": [], "next_offset": cursor.offsets[stream],
                            "partial": cursor.partial.get(stream, "")}  # fmt: skip
        body["metrics"] = {"points": [], "cursor": cursor.metrics, "reset": False}
        body["timeline"] = []
        for name, data in gathered:
            if name == "log":
                body[data["stream"]]["lines"].extend(data["lines"])
            elif name == "metrics":
                if data["reset"]:
                    body["metrics"] = dict(data)
                else:
                    body["metrics"]["points"] = body["metrics"]["points"] + data["points"]
                    body["metrics"]["cursor"] = data["cursor"]
            elif name == "timeline":
                body["timeline"].extend(data["items"])
        body["done"] = run.status.is_final and self.drained(events)
        self.write_json(body)

    @staticmethod
    def _cursor_json(cursor: Cursor) -> dict[str, Any]:
        partials = {f"partial_{k}": v for k, v in cursor.partial_seq.items()}
        return {**cursor.offsets, "metrics": cursor.metrics, "events": cursor.events, **partials}


default_handlers = [
    (r"/api/v1/runs/([0-9a-zA-Z]+)/stream", RunStreamHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)/updates", RunUpdatesHandler),
]

_LIVE_QUERY = (
    Query("stdout", "integer", "first stdout line to send (default 0)"),
    Query("stderr", "integer", "first stderr line to send (default 0)"),
    Query("tail", "integer", "instead: start at the last n lines of each stream"),
    Query("events", "integer", "timeline entries already seen"),
    Query("metrics", "string", "1 to include metric points, or a metric cursor to resume from"),
    Query("logs", "integer", "0 to leave out log lines"),
    Query("partial_stdout", "integer",
          "long-poll: the cursor's partial_stdout (unfinished line seen)"),
    Query("partial_stderr", "integer", "long-poll: the cursor's partial_stderr"),
)  # fmt: skip

#: OpenAPI path items of this module's routes, assembled by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/runs/{run_id}/stream": {
        "get": operation(
            "Live events (text/event-stream): run, log, partial, metrics, timeline, end; "
            "429 past the open streams allowed per user",
            query=_LIVE_QUERY,
            errors=(429,),
            returns={"type": "string"},
            media="text/event-stream",
            streaming=True,
        ),
    },
    "/api/v1/runs/{run_id}/updates": {
        "get": operation(
            "Long-poll: what is new since the cursors, waiting up to `wait` s; 429 past the "
            "open requests allowed per user",
            query=(
                *_LIVE_QUERY,
                Query("wait", "number", f"seconds, 0..{MAX_WAIT_S:g} (default 25)"),
            ),
            errors=(429,),
            returns=ref("RunUpdates"),
        )
    },
}
