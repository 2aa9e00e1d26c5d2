"""Runs whose heartbeats stop become LOST, with the reason, on the run's timeline.

Clients send a heartbeat every ``LATTICEHUB_HEARTBEAT_S`` seconds (30 by default) while a
run is RUNNING. The service sweeps every ``interval`` seconds and marks LOST each run silent
for longer than ``timeout_s``; a heartbeat that arrives later is recorded on the timeline but
does not bring the run back (see :func:`late_heartbeat_message`).

With several replicas over one PostgreSQL database, one replica sweeps: the one that holds
the advisory lock :data:`~hub_ext.common.dblocks.HEARTBEAT_SWEEP_KEY` (see ``lock``); the
others skip their rounds until it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..common.dblocks import AdvisoryLock
from .store.abstract import AbstractStore, now_ms
from .store.entities import Run


def late_heartbeat_message(run: Run, heartbeat: int) -> str:
    """The timeline entry for a heartbeat that reached a run already marked LOST."""
    late_by = (heartbeat - (run.end_time or heartbeat)) / 1000
    return (
        f"heartbeat received {late_by:.0f} s after the run was marked LOST; the run stays "
        "LOST until its process reports a final status"
    )


class HeartbeatMonitor:
    """Marks silent runs LOST.

    Args:
        store: the tracking store.
        timeout_s: seconds without a heartbeat after which a RUNNING run is LOST.
        events: where timeline entries go (``add_event(run_id, kind, message)``), or None.
        notify: called with each run id that changed (wakes live readers), or None.
        clock: milliseconds since the epoch (a seam for tests).
        log: the logger.
        lock: held while this monitor sweeps, so that one replica of several sweeps (a
            :class:`~hub_ext.common.dblocks.AdvisoryLock` on
            :data:`~hub_ext.common.dblocks.HEARTBEAT_SWEEP_KEY`); None: always sweep.
    """

    def __init__(
        self,
        store: AbstractStore,
        *,
        timeout_s: float,
        events: Any = None,
        notify: Callable[[str], None] | None = None,
        clock: Callable[[], int] = now_ms,
        log: logging.Logger | None = None,
        lock: AdvisoryLock | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"heartbeat timeout must be positive seconds, got {timeout_s}")
        self.store = store
        self.timeout_s = timeout_s
        self.events = events
        self.notify = notify
        self.clock = clock
        self.log = log or logging.getLogger("latticehub.heartbeats")
        self.lock = lock

    def sweep(self) -> list[Run]:
        """One pass: the runs marked LOST now (none when another replica holds the lock)."""
        if self.lock is not None and not self.lock.try_acquire():
            self.log.debug("heartbeat sweep skipped: another replica holds its lock")
            return []
        now = self.clock()
        lost = self.store.expire_heartbeats(now - int(self.timeout_s * 1000), now, self.timeout_s)
        for run in lost:
            self.log.info("run %s LOST: %s", run.id, run.status_reason)
            if self.events is not None:
                self.events.add_event(run.id, "lost", run.status_reason, time=now)
            if self.notify is not None:
                self.notify(run.id)
        return lost

    async def run_forever(self, interval_s: float) -> None:
        """Sweep every ``interval_s`` seconds until cancelled; errors are logged, not fatal.

        The lock (if any) is held from round to round and given back when cancelled.
        """
        try:
            while True:
                try:
                    self.sweep()
                except Exception:  # a database hiccup must not end the sweeper
                    self.log.exception("heartbeat sweep failed")
                await asyncio.sleep(interval_s)
        finally:
            if self.lock is not None:
                self.lock.release()
