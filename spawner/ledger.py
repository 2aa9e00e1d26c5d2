"""The slot ledger: which servers hold which group's slots, in one Hub process.

The ledger is the single place where the count is decided. :meth:`SlotLedger.reserve`
checks and reserves in one synchronous step (no ``await`` in between), so N concurrent
spawns against a limit of k get exactly k slots. The ledger is rebuilt from container
labels when the Hub starts, so limits hold across Hub restarts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from latticehub.gpus import GpuUse, NoGpuAvailable, assign_gpus
from latticehub.limits import GroupLimits, LimitError, ServerRequest, check_capacity
from latticehub.slots import PENDING, RUNNING, Slot

__all__ = ["PENDING", "RUNNING", "Slot", "SlotLedger"]


class SlotLedger:
    """Slots held per group, with an optional FIFO wait queue per group."""

    def __init__(self) -> None:
        self._slots: dict[tuple[str, str], Slot] = {}
        self._queues: dict[str, deque[int]] = {}
        self._tickets = itertools.count()
        self._changed: dict[str, asyncio.Event] = {}
        self._known: set[tuple[str, str]] = set()
        self.loaded = False
        self.load_lock = asyncio.Lock()
        #: set once the start-up grace for claiming adopted slots is over: from then on an
        #: unclaimed slot is an orphan (the orphan gauge follows it)
        self.orphans_reported = False

    # -- reading ---------------------------------------------------------------
    def slots(self, pool: str | None = None) -> list[Slot]:
        """Slots of one group (or all), oldest first."""
        found = [s for s in self._slots.values() if pool is None or s.pool == pool]
        return sorted(found, key=lambda s: s.since)

    def get(self, user: str, server: str) -> Slot | None:
        """The slot held by one server, if any."""
        return self._slots.get((user, server))

    def pools(self) -> set[str]:
        """Groups with at least one slot."""
        return {s.pool for s in self._slots.values()}

    def orphans(self) -> list[Slot]:
        """Slots found in the engine that no Hub spawner has claimed."""
        return [s for s in self._slots.values() if not s.claimed]

    # -- changing --------------------------------------------------------------
    def reserve(
        self,
        *,
        pool: str,
        user: str,
        server: str,
        limits: GroupLimits,
        request: ServerRequest,
        gpu_inventory: Mapping[str, Sequence[str]] | None = None,
        nodes: Sequence[str] | None = None,
        ticket: int | None = None,
    ) -> Slot:
        """Check the group's limits and take a slot, atomically (no await inside).

        Args:
            pool: the charged group.
            user: the spawning user.
            server: the server name.
            limits: the group's effective limits.
            request: what the server asks for (GPUs are assigned here).
            gpu_inventory: node -> GPU ids, for GPU requests.
            nodes: nodes the server may be placed on.
            ticket: the caller's place in the group's wait queue, if it waits.

        Raises:
            LimitError: 429 when the group, the user or the GPUs are full, or when
                others wait ahead in the queue.
        """
        queue = self._queues.get(pool)
        if queue and queue[0] != ticket:
            ahead = len(queue) if ticket not in queue else list(queue).index(ticket)
            raise LimitError(
                429,
                "queued",
                f"Group {pool!r} is full and {ahead} spawn(s) wait ahead in its queue.",
            )
        # a server restarting replaces its own stale reservation
        existing = self._slots.get((user, server))
        holders = [s.holder for s in self.slots(pool) if s.key != (user, server)]
        check_capacity(pool=pool, user=user, limits=limits, holders=holders)
        assignment = None
        if request.gpus:
            uses = [
                GpuUse(s.node, s.gpus, s.gpu_shared)
                for s in self._slots.values()
                if s.gpus and s.key != (user, server)
            ]
            try:
                assignment = assign_gpus(
                    inventory=gpu_inventory or {},
                    in_use=uses,
                    count=request.gpus,
                    shared=limits.gpu_sharing,
                    nodes=nodes,
                )
            except NoGpuAvailable as e:
                raise LimitError(
                    429,
                    "gpus_full",
                    f"No GPU is free for group {pool!r}: {e}. Try again later or ask for "
                    "fewer GPUs.",
                ) from None
        slot = Slot(
            pool=pool,
            user=user,
            server=server,
            node=assignment.node if assignment else "",
            gpus=assignment.ids if assignment else (),
            gpu_shared=limits.gpu_sharing,
            mem_limit=request.mem_limit,
            cpu_limit=request.cpu_limit,
            image=request.image,
        )
        if existing is not None:
            self._notify(existing.pool)
        self._slots[slot.key] = slot
        self._known.add(slot.key)
        return slot

    def update(self, slot: Slot, **changes: object) -> Slot | None:
        """Change a held slot (e.g. state, object id); ignored if it is no longer held."""
        current = self._slots.get(slot.key)
        if current is None or current.token != slot.token:
            return None
        new = replace(current, **changes)
        self._slots[slot.key] = new
        return new

    def release(self, user: str, server: str, token: str | None = None) -> Slot | None:
        """Free a server's slot; with ``token``, only if it is still that reservation."""
        current = self._slots.get((user, server))
        if current is None or (token is not None and current.token != token):
            return None
        del self._slots[(user, server)]
        self._notify(current.pool)
        return current

    def adopt(self, slots: Iterable[Slot]) -> None:
        """Replace running slots with what the engine reports (at Hub start)."""
        pending = {k: s for k, s in self._slots.items() if s.state == PENDING}
        self._slots = {}
        for slot in slots:
            self._slots[slot.key] = replace(slot, claimed=slot.key in self._known)
        self._slots.update(pending)
        self.loaded = True
        for pool in self.pools() | set(self._changed):
            self._notify(pool)

    def claim(self, user: str, server: str) -> None:
        """Mark the slot of a server the Hub knows about as owned (not an orphan)."""
        self._known.add((user, server))
        current = self._slots.get((user, server))
        if current is not None and not current.claimed:
            self._slots[current.key] = replace(current, claimed=True)

    def reconcile(self, running_ids: set[str]) -> list[Slot]:
        """Drop running slots whose container/service no longer runs; return them."""
        gone = [
            s
            for s in self._slots.values()
            if s.state == RUNNING and s.object_id and s.object_id not in running_ids
        ]
        for slot in gone:
            self.release(slot.user, slot.server, slot.token)
        return gone

    # -- waiting -----------------------------------------------------------------
    def enqueue(self, pool: str) -> int:
        """Join the group's wait queue; returns a ticket."""
        ticket = next(self._tickets)
        self._queues.setdefault(pool, deque()).append(ticket)
        return ticket

    def dequeue(self, pool: str, ticket: int) -> None:
        """Leave the group's wait queue (served, timed out or cancelled)."""
        queue = self._queues.get(pool)
        if queue and ticket in queue:
            queue.remove(ticket)
            self._notify(pool)
        if queue is not None and not queue:
            del self._queues[pool]

    def position(self, pool: str, ticket: int) -> int:
        """0-based position of a ticket in the group's queue (-1 if not queued)."""
        queue = self._queues.get(pool) or deque()
        return list(queue).index(ticket) if ticket in queue else -1

    def queued(self, pool: str | None = None) -> int:
        """Spawns waiting for a slot (in one group or all)."""
        if pool is not None:
            return len(self._queues.get(pool, ()))
        return sum(len(q) for q in self._queues.values())

    async def wait_for_change(self, pool: str, timeout: float) -> None:
        """Sleep until a slot of ``pool`` is freed or the queue moves, or ``timeout``."""
        event = self._changed.setdefault(pool, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    def _notify(self, pool: str) -> None:
        event = self._changed.pop(pool, None)
        if event is not None:
            event.set()
