"""A page of a run search as columns (the run table): one query per kind of value.

``runs_dataframe`` over 100,000 runs would cost a Run entity and a JSON object per run; the
table is instead built from one search for the page's runs and their attributes, then the
params, tags and latest metrics of those ids (bound in pieces), into one list per column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from . import schema as t
from .sqlquery import chunks, search_query

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
    page = search_query(select(*cols), project_ids, filters, order_by, False)
    rows = conn.execute(page.offset(offset).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    table: dict[str, list[Any]] = {
        name: [row[i] for row in rows] for i, name in enumerate(ATTRIBUTES)
    }
    if not rows:
        return table, more
    index = {run_id: i for i, run_id in enumerate(table["run_id"])}
    count = len(rows)
    lm = t.latest_metrics
    # the page's ids are bound in pieces: running the search again per side table would
    # cost as much as the search itself, three more times
    for piece in chunks(table["run_id"], IDS_PER_QUERY):
        for prefix, side in (("params", t.params), ("tags", t.tags)):
            query = select(side.c.run_id, side.c.key, side.c.value).where(side.c.run_id.in_(piece))
            for run_id, key, value in conn.execute(query):
                column = table.get(f"{prefix}.{key}")
                if column is None:
                    column = table[f"{prefix}.{key}"] = [None] * count
                column[index[run_id]] = value
        latest = select(lm.c.run_id, lm.c.key, lm.c.value, lm.c.is_nan)
        for run_id, key, value, nan in conn.execute(latest.where(lm.c.run_id.in_(piece))):
            column = table.get(f"metrics.{key}")
            if column is None:
                column = table[f"metrics.{key}"] = [None] * count
            column[index[run_id]] = math.nan if nan else value
    return table, more
