"""Metric points as columns in and out of the SQL store, at driver speed.

The compact batch and the columnar history move up to millions of points. Building a
SQLAlchemy row or parameter dict per point would cost more than the database does, so both
paths hand plain tuples to the driver's cursor (inside the SQLAlchemy transaction) and
read with ``fetchmany`` into :mod:`array` columns. On PostgreSQL the history is read with
a server-side cursor, so the service never holds the driver's copy of a long history
beside its own columns.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Connection

from latticehub.columnar import MetricColumns

from . import schema as t
from .sqlquery import METRIC_COLUMNS

#: Rows per fetch of a history read.
FETCH_ROWS = 65_536
_STEP, _STAMP, _VALUE = (itemgetter(i) for i in range(3))


def placeholder(conn_or_engine: Any) -> str:
    """The driver's parameter mark (``?`` for sqlite3, ``%s`` for psycopg)."""
    return "?" if conn_or_engine.dialect.paramstyle == "qmark" else "%s"


def insert_sql(mark: str) -> str:
    """``INSERT`` of one metrics row that skips a row already stored (a retried batch)."""
    return (
        f"INSERT INTO {t.metrics.name} ({', '.join(METRIC_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(METRIC_COLUMNS))}) ON CONFLICT DO NOTHING"
    )


def stored_values(values: array) -> tuple[array, Any]:
    """``values`` as stored and their ``is_nan`` flags: NaN is stored as 0 with the flag set.

    The flags are ``repeat(False)`` when there is no NaN (the common case, no list built).
    """
    if not any(map(math.isnan, values)):
        return values, repeat(False)
    flags = [v != v for v in values]
    return array("d", [0.0 if nan else v for v, nan in zip(values, flags, strict=True)]), flags


def write_columns(
    conn: Connection, run_id: str, columns: Sequence[MetricColumns], sql: str
) -> list[tuple]:
    """Insert the points; returns each key's newest row (step, time, value) for the latest table.

    Rows are ``(run_id, key, step, timestamp, value, is_nan)``, in :data:`METRIC_COLUMNS`
    order.
    """
    cursor: Any = conn.connection.cursor()  # a driver cursor: takes an iterator of rows
    newest: list[tuple] = []
    try:
        for column in columns:
            if not len(column):
                continue
            values, flags = stored_values(column.values)
            cursor.executemany(
                sql,
                zip(
                    repeat(run_id),
                    repeat(column.key),
                    column.steps,
                    column.timestamps,
                    values,
                    flags,
                ),
            )
            # MLflow's "latest": the greatest (step, timestamp, value)
            best = _newest(column.steps, column.timestamps, values)
            nan = column.values[best] != column.values[best]
            newest.append(
                (run_id, column.key, column.steps[best], column.timestamps[best],
                 values[best], nan)
            )  # fmt: skip
    finally:
        cursor.close()
    return newest


def _newest(steps: array, stamps: array, values: array) -> int:
    """Index of the greatest (step, timestamp, value); steps mostly rise, so look at the end."""
    top = max(steps)
    tied = range(steps.index(top), len(steps))
    return max((i for i in tied if steps[i] == top), key=lambda i: (stamps[i], values[i]))


def read_columns(conn: Connection, run_id: str, key: str) -> MetricColumns:
    """A metric's whole history, ordered by step, timestamp and value."""
    mark = placeholder(conn)
    # NaN comes back as NULL: one column less to fetch than value and is_nan (~15% faster)
    sql = (
        f"SELECT step, timestamp, CASE WHEN is_nan THEN NULL ELSE value END "
        f"FROM {t.metrics.name} WHERE run_id = {mark} AND key = {mark} "
        "ORDER BY step, timestamp, value"
    )
    dbapi: Any = conn.connection.dbapi_connection  # the driver's own (psycopg or sqlite3)
    cursor: Any
    if conn.dialect.name == "postgresql":
        cursor = dbapi.cursor(name="lh_metric_columns")  # server-side: rows come in pieces
        cursor.itersize = FETCH_ROWS
    else:
        cursor = dbapi.cursor()
    out = MetricColumns(key)
    try:
        cursor.execute(sql, (run_id, key))
        while rows := cursor.fetchmany(FETCH_ROWS):
            out.steps.extend(map(_STEP, rows))
            out.timestamps.extend(map(_STAMP, rows))
            start = len(out.values)
            try:
                out.values.extend(map(_VALUE, rows))
            except TypeError:  # a NULL: a NaN in this piece (rare)
                del out.values[start:]
                out.values.extend(math.nan if r[2] is None else r[2] for r in rows)
    finally:
        cursor.close()
    return out
