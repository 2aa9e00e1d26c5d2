"""The usage store on SQLite (WAL, the embedded default, on local disk) or PostgreSQL.

A container id can hold several sessions over time (a spawner that keeps stopped containers
starts the same one again), so a session is keyed by a surrogate id; at most one session per
container is *open* (no end) at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from hub_ext.common.db import create_engine
from hub_ext.common.migrations import require_sql_url

from .abstract import UsageStore
from .entities import EXACT, OBSERVED, Session
from .migrations import USAGE
from .schema import cursors_table, sessions_table


def _session(row: Any) -> Session:
    return Session(
        id=row.object_id,
        group=row.group_name,
        user=row.user_name,
        server=row.server_name,
        node=row.node,
        image=row.image,
        gpus=row.gpus,
        cpus=row.cpus,
        mem_bytes=row.mem_bytes,
        start=row.start_time,
        end=row.end_time,
        end_source=row.end_source,
    )


class SqlUsageStore(UsageStore):
    """:class:`UsageStore` on ``sqlite:///path`` or ``postgresql://...``.

    Opening runs the usage database's Alembic migrations to the newest revision (see
    :mod:`.migrations`); a database written before Alembic (no version table) is adopted
    with every row kept.

    Args:
        uri: the database URL.
    """

    def __init__(self, uri: str):
        self.engine = create_engine(require_sql_url(uri, "usage store"))
        USAGE.upgrade(self.engine)

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()

    def _open_row(self, conn: sa.Connection, object_id: str) -> Any:
        t = sessions_table
        query = sa.select(t).where(t.c.object_id == object_id, t.c.end_time.is_(None))
        return conn.execute(query.order_by(t.c.id.desc()).limit(1)).first()

    def record_start(self, session: Session, *, source: str = EXACT) -> bool:  # noqa: D102
        t = sessions_table
        with self.engine.begin() as conn:
            row = self._open_row(conn, session.id)
            if row is not None:
                if row.start_source == OBSERVED and source == EXACT:
                    conn.execute(
                        t.update()
                        .where(t.c.id == row.id)
                        .values(start_time=session.start, start_source=EXACT)
                    )
                    return True
                return False
            # a start already closed by its stop (events replayed after a restart) is old news
            done = conn.execute(
                sa.select(t.c.id).where(
                    t.c.object_id == session.id,
                    t.c.start_time == session.start,
                    t.c.end_time.is_not(None),
                )
            ).first()
            if done is not None:
                return False
            conn.execute(
                t.insert().values(
                    object_id=session.id,
                    group_name=session.group,
                    user_name=session.user,
                    server_name=session.server,
                    node=session.node,
                    image=session.image,
                    gpus=session.gpus,
                    cpus=session.cpus,
                    mem_bytes=session.mem_bytes,
                    start_time=session.start,
                    start_source=source,
                    end_time=None,
                    end_source="",
                )
            )
            return True

    def record_end(self, object_id: str, end: float, *, source: str = EXACT) -> bool:  # noqa: D102
        t = sessions_table
        with self.engine.begin() as conn:
            row = self._open_row(conn, object_id)
            if row is None and source == EXACT:
                # correct the latest session that was only seen gone
                row = conn.execute(
                    sa.select(t)
                    .where(t.c.object_id == object_id, t.c.end_source == OBSERVED)
                    .order_by(t.c.id.desc())
                    .limit(1)
                ).first()
            if row is None:
                return False
            conn.execute(
                t.update()
                .where(t.c.id == row.id)
                .values(end_time=max(end, row.start_time), end_source=source)
            )
            return True

    def open_sessions(self) -> list[Session]:  # noqa: D102
        t = sessions_table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.end_time.is_(None)).order_by(t.c.id))
            return [_session(r) for r in rows]

    def sessions(  # noqa: D102
        self, *, since: float, until: float, groups: Iterable[str] | None = None
    ) -> list[Session]:
        t = sessions_table
        query = sa.select(t).where(
            t.c.start_time < until, sa.or_(t.c.end_time.is_(None), t.c.end_time > since)
        )
        if groups is not None:
            query = query.where(t.c.group_name.in_(sorted(set(groups))))
        with self.engine.connect() as conn:
            return [_session(r) for r in conn.execute(query.order_by(t.c.start_time, t.c.id))]

    def get_cursor(self, name: str) -> float | None:  # noqa: D102
        t = cursors_table
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.c.value).where(t.c.name == name)).scalar()

    def set_cursor(self, name: str, value: float) -> None:  # noqa: D102
        t = cursors_table
        with self.engine.begin() as conn:
            if conn.execute(t.update().where(t.c.name == name).values(value=value)).rowcount == 0:
                conn.execute(t.insert().values(name=name, value=value))
