"""Metric points as columns in and out of the SQL store, as blocks (:mod:`.blocks`).

A write stores one row per key (its points packed); a history read fetches the key's
blocks and joins them with array operations. Both go through the driver's cursor inside
the SQLAlchemy transaction: a handful of rows of bytes, no Python object per point.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from latticehub.columnar import MetricColumns

from . import blocks
from . import schema as t

#: The columns of a block row, in the order of :func:`insert_sql`.
BLOCK_COLUMNS = (
    "run_id", "key", "digest", "count", "first_step", "last_step",
    "step_data", "time_data", "value_data",
)  # fmt: skip


def placeholder(conn_or_engine: Any) -> str:
    """The driver's parameter mark (``?`` for sqlite3, ``%s`` for psycopg)."""
    return "?" if conn_or_engine.dialect.paramstyle == "qmark" else "%s"


def insert_sql(mark: str) -> str:
    """``INSERT`` of one block that skips a block already stored (a retried write)."""
    names = ", ".join(BLOCK_COLUMNS)
    return (
        f"INSERT INTO {t.metric_blocks.name} ({names}) "
        f"VALUES ({', '.join([mark] * len(BLOCK_COLUMNS))}) ON CONFLICT DO NOTHING"
    )


def upsert_latest_sql(mark: str) -> str:
    """Upsert of one ``latest_metrics`` row that keeps a newer (step, timestamp, value)."""
    table = t.latest_metrics.name
    return (
        f"INSERT INTO {table} (run_id, key, step, timestamp, value, is_nan) "
        f"VALUES ({', '.join([mark] * 6)}) ON CONFLICT (run_id, key) DO UPDATE SET "
        "step = excluded.step, timestamp = excluded.timestamp, value = excluded.value, "
        "is_nan = excluded.is_nan WHERE (excluded.step, excluded.timestamp, excluded.value) > "
        f"({table}.step, {table}.timestamp, {table}.value)"
    )


def write_columns(
    conn: Connection, run_id: str, columns: Sequence[MetricColumns], sql: str
) -> list[tuple]:
    """Store each key's points as one block; returns each key's newest row for the latest table.

    Rows returned are ``(run_id, key, step, timestamp, value, is_nan)`` with NaN stored as 0
    and ``is_nan`` set, as ``latest_metrics`` keeps them.
    """
    newest: list[tuple] = []
    rows = []
    for column in columns:
        if not len(column):
            continue
        block = blocks.pack(column)
        rows.append(
            (run_id, column.key, block.digest, block.count, block.first_step, block.last_step,
             block.steps, block.timestamps, block.values)
        )  # fmt: skip
        step, stamp, value = blocks.newest(block)
        nan = value != value
        newest.append((run_id, column.key, step, stamp, 0.0 if nan else value, nan))
    if rows:
        cursor: Any = conn.connection.cursor()  # the driver's: a few rows of bytes
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()
    return newest


def read_columns(conn: Connection, run_id: str, key: str, *, total: int) -> MetricColumns:
    """A metric's whole history, ordered by step, timestamp and value (NumPy columns).

    ``total`` is the history's point count, from :func:`history_version` just before (the
    columns are made at that size; a block written in between is taken too). Blocks are
    fetched one at a time and copied into the columns (:func:`.blocks.join`).
    """
    mark = placeholder(conn)
    sql = (
        f"SELECT first_step, last_step, step_data, time_data, value_data "
        f"FROM {t.metric_blocks.name} WHERE run_id = {mark} AND key = {mark} "
        "ORDER BY first_step, last_step, digest"
    )
    cursor: Any
    if conn.dialect.name == "postgresql":
        # a server-side cursor, in binary: a client-side one would receive every block (as
        # hex text, twice their size) before the first is copied
        cursor = conn.connection.cursor(name=f"lh_history_{secrets.token_hex(6)}")
        cursor.itersize = 1
        execute = functools.partial(cursor.execute, binary=True)
    else:
        cursor = conn.connection.cursor()
        execute = cursor.execute

    def one_at_a_time() -> Any:
        while (found := cursor.fetchone()) is not None:
            yield found

    try:
        execute(sql, (run_id, key))
        return blocks.join(key, total, one_at_a_time())
    finally:
        cursor.close()


def history_version(conn: Connection, run_id: str, key: str) -> tuple[int, int]:
    """``(blocks, points)`` of a history: changes whenever a block is added (cache check)."""
    mark = placeholder(conn)
    cursor: Any = conn.connection.cursor()
    try:
        cursor.execute(
            f"SELECT count(*), coalesce(sum(count), 0) FROM {t.metric_blocks.name} "
            f"WHERE run_id = {mark} AND key = {mark}",
            (run_id, key),
        )
        found, points = cursor.fetchone()
    finally:
        cursor.close()
    return int(found), int(points)
