"""A page of a run search as columns (the run table): one query per kind of value.

``runs_dataframe`` over 100,000 runs would cost a Run entity and a JSON object per run; the
table is instead built from one search for the page's runs and their attributes, then the
params, tags and latest metrics of those ids (bound in pieces), into one list per column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from . import schema as t
from .columns_sql import placeholder
from .run_search_sql import search_rows
from .sqlquery import chunks

#: The side tables: column prefix, table, the value read (a NaN metric comes back NULL).
SIDES = (
    ("params", t.params.name, "value"),
    ("tags", t.tags.name, "value"),
    ("metrics", t.latest_metrics.name, "CASE WHEN is_nan THEN NULL ELSE value END"),
)
#: Run ids bound in one ``IN`` (SQLite allows 32,766 parameters, PostgreSQL 65,535).
IDS_PER_QUERY = 10_000

#: The run attributes every table has, in order (``user`` is the run's user).
ATTRIBUTES = ("run_id", "name", "user", "status", "start_time", "end_time")


def run_table(
    conn: Connection,
    *,
    project_ids: Sequence[int] | None,
    filters: Sequence[Any],
    order_by: Sequence[Any],
    offset: int,
    limit: int,
) -> tuple[dict[str, list[Any]], bool]:
    """Columns of one page of matching runs, and whether more runs match after it.

    Returns:
        ``{"run_id": [...], "name", "user", "status", "start_time", "end_time",
        "params.<key>": [...], "tags.<key>": [...], "metrics.<key>": [...]}``, each list
        as long as the page; a run without a param, tag or metric has ``None`` there.
        Metric values are the latest values (NaN as NaN).
    """
    runs = t.runs
    cols = [runs.c.run_id, runs.c.name, runs.c.user_id, runs.c.status, runs.c.start_time,
            runs.c.end_time]  # fmt: skip
    rows = search_rows(
        conn, cols, project_ids=project_ids, filters=filters, order_by=order_by,
        include_deleted=False, offset=offset, limit=limit, plain=True,
    )  # fmt: skip
    more = len(rows) > limit
    rows = rows[:limit]
    table: dict[str, list[Any]] = {
        name: [row[i] for row in rows] for i, name in enumerate(ATTRIBUTES)
    }
    if not rows:
        return table, more
    index = {run_id: i for i, run_id in enumerate(table["run_id"])}
    count = len(rows)
    keyed: dict[str, dict[str, list[Any]]] = {prefix: {} for prefix, _, _ in SIDES}
    mark = placeholder(conn)
    cursor: Any = conn.connection.cursor()  # the driver's: no Row object per value
    try:
        # the page's ids are bound in pieces: running the search again per side table would
        # cost as much as the search itself, three more times
        postgres = conn.dialect.name == "postgresql"
        # PostgreSQL takes the page in one array: with 100,000 ids it hashes them and scans
        # the side table once instead of looking each id up
        per_query = len(table["run_id"]) if postgres else IDS_PER_QUERY
        for piece in chunks(table["run_id"], per_query):
            # PostgreSQL: one array parameter (10,000 parameters cost more to plan than to run)
            ids = f"= ANY({mark})" if postgres else f"IN ({', '.join([mark] * len(piece))})"
            args = [piece] if postgres else piece
            for prefix, side, value in SIDES:
                cursor.execute(f"SELECT run_id, key, {value} FROM {side} WHERE run_id {ids}", args)
                by_key = keyed[prefix]
                for run_id, key, found in cursor.fetchall():
                    column = by_key.get(key)
                    if column is None:
                        column = by_key[key] = table[f"{prefix}.{key}"] = [None] * count
                    column[index[run_id]] = math.nan if found is None else found
    finally:
        cursor.close()
    return table, more
