"""Advisory locks on a service's own database: one replica at a time runs a task.

Several replicas of a service over one PostgreSQL database must not all run the same
periodic task (a heartbeat sweep, a job poll) or two blob collections at once. Each such
task has a fixed lock key (the ``*_KEY`` constants below, listed in docs/replicas.md); a
replica takes a PostgreSQL session-level advisory lock (``pg_try_advisory_lock``) on a
connection of its own before it runs the task, and skips the task when another replica
holds the lock. PostgreSQL frees the lock when that connection closes, so a replica that
dies never keeps a lock.

SQLite deployments are single-process (one replica: SQLite is one file on one host), so
there is nobody to exclude: on SQLite (or with no engine at all) :class:`AdvisoryLock` is a
no-op that always succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

#: The key space of latticehub's locks: ASCII ``LH`` in the high half of a 32-bit number.
KEY_BASE = 0x4C48_0000
#: The experiments service's sweep for runs whose heartbeats stopped (1279787009).
HEARTBEAT_SWEEP_KEY = KEY_BASE + 1
#: The experiments service's poll of the job executors (1279787010).
JOB_POLL_KEY = KEY_BASE + 2
#: ``latticehub gc``, the artifact blob collector (1279787011).
BLOB_GC_KEY = KEY_BASE + 3
#: Starting queued docker and swarm jobs: list the containers, then start into free slots;
#: one replica at a time, for the moment it takes (1279787012).
JOB_ADMIT_KEY = KEY_BASE + 4


class AdvisoryLock:
    """A PostgreSQL session-level advisory lock, held on a connection of its own.

    :meth:`try_acquire` takes the lock when it is free and keeps it until :meth:`release`
    (or until the connection is lost). A holder that calls :meth:`try_acquire` again keeps
    the lock (it checks that its connection is still alive), so a periodic task that holds
    the lock from round to round runs on one replica only, once per interval; when that
    replica stops, the next one to try takes over.

    On SQLite, or with ``engine`` None, the lock always succeeds and holds no connection
    (single-process deployments).

    Args:
        engine: the service's database engine (None: no shared database).
        key: the lock's key, e.g. :data:`HEARTBEAT_SWEEP_KEY`.
        name: what the lock guards, for log lines, e.g. ``"heartbeat sweep"``.
        log: the logger.
    """

    def __init__(
        self,
        engine: Engine | None,
        key: int,
        name: str,
        *,
        log: logging.Logger | None = None,
    ) -> None:
        self.engine = engine
        self.key = key
        self.name = name
        self.log = log or logging.getLogger("latticehub.dblocks")
        self.shared = engine is not None and engine.dialect.name == "postgresql"
        self._conn: Connection | None = None
        self._mutex = threading.Lock()
        self._noop_held = False

    @property
    def held(self) -> bool:
        """Whether this holder has the lock now (as far as it knows)."""
        return self._conn is not None if self.shared else self._noop_held

    def try_acquire(self) -> bool:
        """Take the lock, or keep it if held; False while another session holds it.

        Raises:
            sqlalchemy.exc.DBAPIError: when the database cannot be reached.
        """
        if not self.shared:
            self._noop_held = True
            return True
        assert self.engine is not None
        with self._mutex:
            if self._conn is not None:
                try:
                    self._conn.execute(sa.text("SELECT 1"))
                    return True
                except sa.exc.DBAPIError:  # the connection, and the lock with it, is gone
                    self.log.warning("lost the %s lock (key %d): its connection closed",
                                     self.name, self.key)  # fmt: skip
                    self._discard()
            conn = self.engine.connect()
            try:
                # no transaction stays open while the lock is held (idle-in-transaction limits)
                conn.execution_options(isolation_level="AUTOCOMMIT")
                got = conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
                ).scalar()
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            if got:
                self._conn = conn
                self.log.info("took the %s lock (key %d)", self.name, self.key)
                return True
            conn.close()
            return False

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if not self.shared:
            self._noop_held = False
            return
        with self._mutex:
            if self._conn is None:
                return
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            except sa.exc.DBAPIError:
                pass  # the connection is gone, and the lock with it
            self._discard()

    def _discard(self) -> None:
        # a pooled connection must never carry the lock on: close the session itself
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> bool:
        return self.try_acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


@contextlib.contextmanager
def try_lock(
    engine: Engine | None, key: int, name: str, *, log: logging.Logger | None = None
) -> Iterator[bool]:
    """Hold the lock ``key`` for a block, if free: yields False while another holds it.

    Use: ``with try_lock(engine, BLOB_GC_KEY, "blob gc") as got: ...``. The lock is released
    when the block ends. See :class:`AdvisoryLock`.
    """
    lock = AdvisoryLock(engine, key, name, log=log)
    try:
        yield lock.try_acquire()
    finally:
        lock.release()
