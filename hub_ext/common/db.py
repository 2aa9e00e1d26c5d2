"""SQLAlchemy engines for the services' own databases (SQLite with WAL, or PostgreSQL).

Each service opens only its own database; this is the one way they all open one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

#: Bytes of a SQLite database read through a memory map instead of ``read`` calls: a search
#: over a million runs looks up rows all over the file (10% faster at 1M runs). Address space,
#: not memory: the pages are the OS page cache's.
SQLITE_MMAP_BYTES = 1 << 30


def create_engine(uri: str) -> Engine:
    """An engine for ``sqlite:///path`` (WAL, foreign keys) or ``postgresql://...``."""
    sqlite = uri.startswith("sqlite")
    # a pooled PostgreSQL connection may have been closed by the server; a file cannot
    engine = sa.create_engine(uri, pool_pre_ping=not sqlite)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            cursor.close()

    return engine
