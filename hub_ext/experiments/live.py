"""The change feed behind live streams: per-run versions, waiters and a bounded metric ring.

Writers (handlers, the job poller) call :meth:`LiveBus.notify` or
:meth:`LiveBus.publish_metrics` after a write is stored; stream handlers remember a run's
version, read what is new from the store, and await a newer version. Log lines are read from
the store by offset, so that memory per stream does not grow with readers or output; metric
points are kept in a small ring per run (their store order is not a feed order).

The bus also counts each user's open streams against :attr:`LiveConfig.max_streams_per_user`,
and carries how often an open stream checks that its reader may still read the run
(:attr:`LiveConfig.access_recheck_interval`).

Replicas of the service over one PostgreSQL database forward what their writers hand the
bus to each other (:attr:`LiveBus.forward`, :meth:`LiveBus.apply_remote`; the transport is
:mod:`hub_ext.experiments.replicas`).
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from traitlets import Float, Int, TraitError, default, validate
from traitlets.config import Configurable

#: Metric points kept per run for live readers; older ones are read from the store.
RING_POINTS = 4096
#: The unfinished line (a progress bar rewritten with ``\r``) kept per stream, in characters.
MAX_PARTIAL = 4096
#: What can change about a run; writers name what they changed, readers query only that.
TOPICS = ("run", "stdout", "stderr", "timeline")
#: Answers remembered per run and version (see :meth:`LiveBus.memo`).
MAX_MEMO = 64
#: Runs whose feeds are kept; the least recently written beyond this are forgotten.
MAX_FEEDS = 10_000
#: The longest time an open stream may go without checking its reader's access (seconds).
MAX_RECHECK_S = 30.0

#: ``forward(run_id, topics, points, partial, older)``: hands one local change to other
#: replicas.
#: ``topics`` are the topics :meth:`LiveBus.notify` bumped (empty for other writes),
#: ``points`` the metric points published, ``partial`` a ``(stream, text)`` unfinished line.
#: ``older`` counts the write's points before ``points`` that the ring does not keep.
Forwarder = Callable[[str, Sequence[str], Sequence[Any], "tuple[str, str] | None", int], None]


def _env_number(name: str, fallback: str, kind: type) -> Any:
    raw = os.environ.get(name, fallback)
    try:
        return kind(raw)
    except ValueError:
        raise TraitError(
            f"${name}={raw!r} is not a{'n integer' if kind is int else ' number'}: "
            f"set it like {name}={fallback}"
        ) from None


class LiveConfig(Configurable):
    """Limits of the live streams (``/runs/{id}/stream`` and ``/runs/{id}/updates``).

    .. versionadded:: 0.1
    """

    max_streams_per_user = Int(
        help="""
        Live streams (server-sent event streams and waiting long-polls together) one user
        may hold open at once in this service process. One more is refused with HTTP 429
        and a JSON body that names the limit; a closed stream frees its slot at once.
        A dashboard run page holds one, a notebook RunMonitor one. Default:
        ``$LATTICEHUB_LIVE_MAX_STREAMS`` or 10. Example: 20.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    @default("max_streams_per_user")
    def _default_max_streams_per_user(self) -> int:
        return _env_number("LATTICEHUB_LIVE_MAX_STREAMS", "10", int)

    @validate("max_streams_per_user")
    def _validate_max_streams_per_user(self, proposal: Any) -> int:
        value = proposal["value"]
        if value < 1:
            raise TraitError(
                f"max_streams_per_user must be at least 1 (streams per user), got {value}"
            )
        return value

    access_recheck_interval = Float(
        help=f"""
        Seconds between checks, in each open stream, that its reader may still read the
        run (group membership, shares, the project's existence, the token). A reader who
        lost access gets the event ``end`` with ``reason: "access_revoked"`` (a long-poll:
        HTTP 403) and the stream closes. At most {MAX_RECHECK_S:g}. Default:
        ``$LATTICEHUB_LIVE_RECHECK_S`` or 30. Example: 10.

        .. versionadded:: 0.1
        """,
    ).tag(config=True)

    @default("access_recheck_interval")
    def _default_access_recheck_interval(self) -> float:
        return _env_number("LATTICEHUB_LIVE_RECHECK_S", f"{MAX_RECHECK_S:g}", float)

    @validate("access_recheck_interval")
    def _validate_access_recheck_interval(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0 < value <= MAX_RECHECK_S:
            raise TraitError(
                f"access_recheck_interval must be seconds in (0, {MAX_RECHECK_S:g}], got "
                f"{value!r}: a stream re-checks access at least every {MAX_RECHECK_S:g} s"
            )
        return value


class StreamSlot:
    """One open stream of a user; :meth:`release` (idempotent) frees it."""

    def __init__(self, bus: LiveBus, user: str):
        self.bus = bus
        self.user = user
        self.released = False

    def release(self) -> None:
        """Give the slot back (once; later calls do nothing)."""
        if not self.released:
            self.released = True
            self.bus._release_stream(self.user)


class _Ring:
    """The newest :data:`RING_POINTS` metric points of one run, as the writers handed them.

    Each write's points are kept as the one sequence they came in (a list, or a
    :class:`~.serialize.ColumnPoints` view of a columnar batch); a point becomes JSON only
    when a reader asks. Entries are ``[seq of the first kept point, points, first kept
    index]``; the oldest entry is trimmed from the front as newer points arrive.
    """

    __slots__ = ("entries", "size")

    def __init__(self) -> None:
        self.entries: collections.deque[list[Any]] = collections.deque()
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        """``(seq, point)`` from the oldest kept point on."""
        for first, points, start in self.entries:
            for i in range(start, len(points)):
                yield first + i - start, points[i]

    def extend(self, first_seq: int, points: Sequence[Any]) -> None:
        """Keep ``points`` (numbered from ``first_seq``); drop what falls out of the ring."""
        if not points:
            return
        self.entries.append([first_seq, points, 0])
        self.size += len(points)
        over = self.size - RING_POINTS
        while over > 0:
            entry = self.entries[0]
            left = len(entry[1]) - entry[2]
            if left <= over:
                self.entries.popleft()
                drop = left
            else:
                entry[0] += over
                entry[2] += over
                drop = over
            self.size -= drop
            over -= drop

    def clear(self) -> None:
        """Forget every point (readers with a cursor in the ring reload from the store)."""
        self.entries.clear()
        self.size = 0

    def oldest(self) -> int | None:
        """The seq of the oldest point kept, or None when the ring is empty."""
        return self.entries[0][0] if self.entries else None

    def since(self, after: int) -> list[dict[str, Any]]:
        """The kept points numbered after ``after``, as JSON dicts."""
        out: list[dict[str, Any]] = []
        for first, points, start in self.entries:
            begin = start + max(0, after + 1 - first)
            out += [_point_json(points[i]) for i in range(begin, len(points))]
        return out


@dataclass
class _Feed:
    """What live readers of one run wait on."""

    version: int = 0
    seq: int = 0
    ring: _Ring = field(default_factory=lambda: _Ring())
    partial: dict[str, str] = field(default_factory=dict)
    partial_seq: dict[str, int] = field(default_factory=dict)
    waiters: set[asyncio.Future] = field(default_factory=set)
    topics: dict[str, int] = field(default_factory=dict)
    memo: dict[Any, Any] = field(default_factory=dict)
    memo_version: int = -1


class LiveBus:
    """Per-run change notifications for the live streams of one service process.

    All methods are called on the service's event loop thread except :meth:`notify` and
    :meth:`publish_metrics`, which may also be called from other threads (they hand the
    wake-up to the loop). Memory is bounded: a ring of :data:`RING_POINTS` metric points and
    one unfinished line per stream for each of at most :data:`MAX_FEEDS` runs, whatever the
    number of readers.

    Metric cursors are ``"<epoch>-<seq>"``: ``epoch`` changes when the process restarts, so a
    reader holding a cursor from an earlier process (or one older than the ring) is told to
    reload the history (``reset``) instead of silently missing points.
    """

    def __init__(self, clock: Any = time.monotonic, config: LiveConfig | None = None) -> None:
        self.epoch = secrets.token_hex(4)
        self.config = config if config is not None else LiveConfig()
        self._feeds: collections.OrderedDict[str, _Feed] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock = clock
        self._streams: dict[str, int] = {}
        #: where local changes go to other replicas (None: a single process)
        self.forward: Forwarder | None = None

    # -- open streams per user -------------------------------------------------------------
    def open_stream(self, user: str) -> StreamSlot | None:
        """A slot for one more open stream of ``user``; None when they hold the maximum."""
        with self._lock:
            held = self._streams.get(user, 0)
            if held >= self.config.max_streams_per_user:
                return None
            self._streams[user] = held + 1
        return StreamSlot(self, user)

    def streams_of(self, user: str) -> int:
        """Streams ``user`` holds open now."""
        with self._lock:
            return self._streams.get(user, 0)

    def _release_stream(self, user: str) -> None:
        with self._lock:
            held = self._streams.get(user, 0) - 1
            if held > 0:
                self._streams[user] = held
            else:
                self._streams.pop(user, None)

    # -- writers ---------------------------------------------------------------------------
    def notify(self, run_id: str, *topics: str) -> None:
        """Something of ``run_id`` changed: wake its readers.

        Args:
            run_id: the run.
            topics: what changed, of :data:`TOPICS` (default: all of them), so that readers
                query only that.
        """
        with self._lock:
            feed = self._feed(run_id)
            feed.version += 1
            for topic in topics or TOPICS:
                feed.topics[topic] = feed.topics.get(topic, 0) + 1
        self._wake(run_id)
        if self.forward is not None:
            self.forward(run_id, topics or TOPICS, (), None, 0)

    def publish_metrics(
        self, run_id: str, points: Iterable[Any], *, count: int | None = None
    ) -> None:
        """Stored metric points for live readers.

        A point is a ``{key, value, step, timestamp}`` dict or a store ``Metric``; a Metric is
        turned into the dict only when a reader asks (most of a big batch falls out of the
        ring unread, and writers should not pay for it).

        Args:
            run_id: the run.
            points: the points, oldest first.
            count: the write's number of points when ``points`` are only its newest ones:
                the older ones still take their numbers, so that a reader whose cursor is
                before them reloads the history instead of missing them.
        """
        kept = points if isinstance(points, Sequence) else list(points)
        total = max(len(kept), count or 0)
        with self._lock:
            feed = self._feed(run_id)
            feed.seq += total
            if len(kept) > RING_POINTS:  # the rest would fall out at once
                kept = kept[len(kept) - RING_POINTS :]
            feed.ring.extend(feed.seq - len(kept) + 1, kept)
            feed.version += 1
        self._wake(run_id)
        if self.forward is not None and total:
            self.forward(run_id, (), kept, None, total - len(kept))

    def publish_columns(self, run_id: str, columns: Sequence[Any]) -> None:
        """Stored metric columns for live readers (their newest :data:`RING_POINTS` points).

        Args:
            run_id: the run.
            columns: the write's :class:`~latticehub.columnar.MetricColumns`; nothing is made
                per point until a reader asks.
        """
        from .serialize import ColumnPoints  # the bus itself knows no entities

        total = sum(len(column) for column in columns)
        self.publish_metrics(run_id, ColumnPoints(columns, RING_POINTS), count=total)

    def set_partial(self, run_id: str, stream: str, text: str) -> None:
        """The stream's unfinished last line (what a progress bar shows now)."""
        with self._lock:
            feed = self._feed(run_id)
            shown = [part for part in text.split("\r") if part]
            text = shown[-1] if shown else ""
            if feed.partial.get(stream, "") == text[-MAX_PARTIAL:]:
                return  # unchanged: readers have it
            feed.partial[stream] = text[-MAX_PARTIAL:]
            feed.partial_seq[stream] = feed.partial_seq.get(stream, 0) + 1
            feed.version += 1
        self._wake(run_id)
        if self.forward is not None:
            self.forward(run_id, (), (), (stream, text[-MAX_PARTIAL:]), 0)

    # -- changes from other replicas ---------------------------------------------------------
    def apply_remote(
        self,
        run_id: str,
        topics: Iterable[str] = (),
        points: Iterable[Any] = (),
        skipped: int = 0,
        partials: dict[str, str] | None = None,
    ) -> None:
        """A change another replica made: wake this process's readers of the run.

        Nothing is forwarded again. ``skipped`` counts metric points the change carried too
        many of to pass along (older than ``points``): the ring is then emptied, so that
        every reader's cursor is older than the ring and the reader reloads the history from
        the store (``reset``), and the ``run`` topic moves (the run's metric keys).
        """
        topics = set(topics) | ({"run"} if skipped else set())
        with self._lock:
            feed = self._feed(run_id)
            for topic in topics:
                feed.topics[topic] = feed.topics.get(topic, 0) + 1
            if skipped:
                feed.ring.clear()
                feed.seq += skipped
            kept = points if isinstance(points, Sequence) else list(points)
            feed.ring.extend(feed.seq + 1, kept)
            feed.seq += len(kept)
            for stream, text in (partials or {}).items():
                feed.partial[stream] = text[-MAX_PARTIAL:]
                feed.partial_seq[stream] = feed.partial_seq.get(stream, 0) + 1
            feed.version += 1
        self._wake(run_id)

    def resync(self) -> None:
        """Changes of other replicas may have been missed: every reader re-reads everything.

        Called when the link to the other replicas comes back after a break: each known
        run's topics move and its metric readers reload the history from the store.
        """
        with self._lock:
            run_ids = list(self._feeds)
            for feed in self._feeds.values():
                for topic in TOPICS:
                    feed.topics[topic] = feed.topics.get(topic, 0) + 1
                feed.ring.clear()
                feed.seq += 1
                feed.version += 1
        for run_id in run_ids:
            self._wake(run_id)

    # -- readers ---------------------------------------------------------------------------
    def version(self, run_id: str) -> int:
        """The run's change counter (compare with a later value to see if anything is new)."""
        with self._lock:
            feed = self._feeds.get(run_id)
            return feed.version if feed else 0

    def topic_versions(self, run_id: str) -> dict[str, int]:
        """Change counters per topic (a reader re-reads a topic when its counter moved)."""
        with self._lock:
            feed = self._feeds.get(run_id)
            return dict(feed.topics) if feed else {}

    def partial(self, run_id: str, stream: str) -> tuple[int, str]:
        """``(change counter, text)`` of a stream's unfinished line (``(0, "")`` if none)."""
        with self._lock:
            feed = self._feeds.get(run_id)
            if feed is None:
                return 0, ""
            return feed.partial_seq.get(stream, 0), feed.partial.get(stream, "")

    def cursor(self, run_id: str) -> str:
        """A metric cursor at the newest point published so far."""
        with self._lock:
            feed = self._feeds.get(run_id)
            return f"{self.epoch}-{feed.seq if feed else 0}"

    def metrics_since(self, run_id: str, cursor: str | None) -> tuple[list[dict], str, bool]:
        """Points published after ``cursor``: ``(points, new cursor, reset)``.

        ``reset`` is true when the cursor is from another process or older than the ring:
        the reader must reload the history from the store (the points returned are then
        empty and the new cursor is the current position).
        """
        epoch, _, raw = (cursor or "").partition("-")
        with self._lock:
            feed = self._feeds.get(run_id)
            seq = feed.seq if feed else 0
            now = f"{self.epoch}-{seq}"
            if epoch != self.epoch or not raw.isdigit():
                return [], now, True
            after = int(raw)
            if after > seq:
                return [], now, True
            if feed is None or after == seq:
                return [], now, False
            oldest = feed.ring.oldest()
            if after + 1 < (seq + 1 if oldest is None else oldest):
                return [], now, True
            return feed.ring.since(after), now, False

    async def wait(self, run_id: str, version: int, timeout: float) -> bool:
        """Wait until the run's version passes ``version``; False on timeout."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        with self._lock:
            feed = self._feed(run_id)
            if feed.version > version:
                return True
            future: asyncio.Future = loop.create_future()
            feed.waiters.add(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                feed.waiters.discard(future)

    def memo(self, run_id: str, version: int, key: Any, compute: Any) -> Any:
        """``compute()``, shared by every reader of the run at the same version and ``key``.

        Readers woken by one write ask the same questions (lines after the same offset, the
        run's status); answering once per write instead of once per reader keeps the work
        per write constant in the number of readers. Entries go when the version moves.
        """
        with self._lock:
            feed = self._feed(run_id)
            if feed.memo_version != version:
                feed.memo, feed.memo_version = {}, version
            elif key in feed.memo:
                return feed.memo[key]
        value = compute()
        with self._lock:
            if feed.memo_version == version and len(feed.memo) < MAX_MEMO:
                feed.memo[key] = value
        return value

    def readers(self) -> int:
        """Readers waiting now (for metrics and tests)."""
        with self._lock:
            return sum(len(f.waiters) for f in self._feeds.values())

    # -- internals -------------------------------------------------------------------------
    def _feed(self, run_id: str) -> _Feed:
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = _Feed()
            while len(self._feeds) > MAX_FEEDS:
                old_id, old = next(iter(self._feeds.items()))
                if old.waiters:  # never drop a feed someone waits on
                    self._feeds.move_to_end(old_id)
                    break
                del self._feeds[old_id]
        else:
            self._feeds.move_to_end(run_id)
        return feed

    def _wake(self, run_id: str) -> None:
        with self._lock:
            feed = self._feeds.get(run_id)
            waiters = list(feed.waiters) if feed else []
        if not waiters:
            return

        def release() -> None:
            for future in waiters:
                if not future.done():
                    future.set_result(None)

        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(release)
        else:
            release()


def _point_json(point: Any) -> dict[str, Any]:
    if isinstance(point, dict):
        return point
    from .serialize import metric  # the bus itself knows no entities

    return metric(point)
