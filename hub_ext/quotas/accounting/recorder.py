"""Record server sessions from the engine: its event log for exact times, its list for truth.

Each round (every ``interval`` seconds) the recorder

1. reads the engine's ``start``/``die`` events since its cursor (exact times, replayed after a
   restart of the service as far as the engine's event log reaches),
2. lists this Hub's running objects: one with no open session is opened (``observed``, from
   its creation time), an open session whose object is gone is closed at this round's time
   (``observed``; a later ``die`` event corrects it to the exact time),
3. moves the cursor.

So a session is never lost when the service was down, and its times are exact whenever the
engine still holds the event. The recorder reads the engine only; it never writes to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..docker_source import EngineSource, EngineUnavailable
from .abstract import UsageStore
from .sessions import EXACT, OBSERVED, session_from_labels

#: The store's cursor: the engine time up to which events were read.
CURSOR = "engine-events"


class UsageRecorder:
    """Keeps the usage store in step with the engine.

    Args:
        store: where sessions go.
        engine: this Hub's engine.
        clock: seconds since the epoch (a seam for tests).
        lookback: on the very first round, read events this many seconds back.
        log: a logger.
    """

    def __init__(
        self,
        store: UsageStore,
        engine: EngineSource,
        *,
        clock: Callable[[], float] = time.time,
        lookback: float = 3600.0,
        log: Any = None,
    ):
        self.store = store
        self.engine = engine
        self.clock = clock
        self.lookback = lookback
        self.log = log or logging.getLogger(__name__)
        self._lock = asyncio.Lock()

    async def record(self) -> dict[str, int]:
        """One round; returns counts of what changed (``opened``, ``closed``, ``events``).

        Raises:
            EngineUnavailable: the engine could not be read (nothing was changed).
        """
        async with self._lock:  # a page may ask for a round while the timer runs one
            return await self._record()

    async def _record(self) -> dict[str, int]:
        now = self.clock()
        since = self.store.get_cursor(CURSOR)
        if since is None:
            since = now - self.lookback
        events = await self.engine.lifecycle_events(since, now)
        objects = await self.engine.objects()
        counts = {"events": len(events), "opened": 0, "closed": 0}
        for event in events:
            if event.action == "start":
                session = session_from_labels(
                    event.id, event.labels, start=event.time, image=event.image
                )
                if session is not None and self.store.record_start(session, source=EXACT):
                    counts["opened"] += 1
            elif event.action == "die" and self.store.record_end(event.id, event.time):
                counts["closed"] += 1
        running = {o.id: o for o in objects}
        open_ids = {s.id for s in self.store.open_sessions()}
        for object_id, o in running.items():
            if object_id in open_ids:
                continue
            session = session_from_labels(
                object_id, o.labels, start=o.created or now, image=o.image, node=o.node
            )
            if session is not None and self.store.record_start(session, source=OBSERVED):
                counts["opened"] += 1
        for object_id in open_ids - running.keys():
            if self.store.record_end(object_id, now, source=OBSERVED):
                counts["closed"] += 1
        self.store.set_cursor(CURSOR, now)
        return counts

    async def run(self, interval: float) -> None:
        """Record every ``interval`` seconds until cancelled; engine failures are logged."""
        while True:
            try:
                counts = await self.record()
                if counts["opened"] or counts["closed"]:
                    self.log.info("usage: %(opened)s session(s) opened, %(closed)s closed", counts)
            except EngineUnavailable as e:
                self.log.warning("usage not recorded this round: %s", e)
            except Exception:  # keep recording; the next round retries
                self.log.exception("usage recording failed")
            await asyncio.sleep(interval)
