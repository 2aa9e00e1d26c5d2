"""Run searches that stay fast at a million runs: which index drives, and top-N by a metric.

The plain translation (:func:`.sqlquery.search_query`) reads runs in start-time order and
checks each filter per run (``EXISTS``): ideal when many runs match and a page is small (it
stops after the page), slow when few match or the page is large (it visits every run).
Ordering by a metric outer-joins the latest values and sorts them all, to put runs without
the metric last. Two rewrites, with the same answers:

- **A selective filter drives.** A metric comparison (``metrics.loss < 0.1``) or a param
  equality (``params.L = '8'``) becomes an inner join on its ``(key, value)`` index when a
  capped count of its index range (:func:`probe`, a few ms) shows that at most a few times
  the rows wanted match it. (``latest_metrics`` and ``params`` hold one row per run and key,
  so the join adds no duplicates.)
- **Top-N by a metric.** When the first ordering is a metric and the page is near the top,
  the runs that have the metric are read in the order of the ``(key, value)`` index with a
  limit; only if they do not fill the page are runs without the metric appended (in the
  remaining order), as MLflow puts them last.

``docs/tracking.md`` ("Searching a million runs") shows the query plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Connection

from . import schema as t
from .sqlquery import compare, search_query

#: Candidate rows counted at least before a filter is judged too broad to drive.
MIN_PROBE = 20_000
#: A filter drives when at most this many times the rows wanted match it.
PROBE_FACTOR = 4
#: Pages reaching this deep use the plain query (top-N reads offset + limit rows first).
TOP_N_DEPTH = 10_000
_RANGE_OPS = frozenset({"=", "<", "<=", ">", ">="})


def _drivable(comparison: Any) -> bool:
    if comparison.kind == "metric":
        return comparison.op in _RANGE_OPS
    return comparison.kind == "param" and comparison.op == "="


def _side(comparison: Any) -> Any:
    return t.latest_metrics if comparison.kind == "metric" else t.params


def probe(conn: Connection, comparison: Any, cap: int) -> int:
    """Index entries matching ``comparison`` over every project, counted up to ``cap``."""
    side = _side(comparison)
    where = [side.c.key == comparison.key, compare(side.c.value, comparison.op, comparison.value)]
    if comparison.kind == "metric":
        where.append(side.c.is_nan.is_(False))
    inner = select(sa.literal(1)).select_from(side).where(*where).limit(cap).subquery()
    return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())


def search_rows(
    conn: Connection,
    columns: Sequence[Any],
    *,
    project_ids: Sequence[int] | None,
    filters: Sequence[Any],
    order_by: Sequence[Any],
    include_deleted: bool,
    offset: int,
    limit: int,
    plain: bool = False,
) -> list[Any]:
    """Rows of ``columns`` (of the runs table) for one page, plus one more if more match.

    ``plain``: the driver's tuples instead of SQLAlchemy rows (a run table of 100,000 runs
    would spend a tenth of a second on the rows).
    """

    def fetch(query: Any) -> list[Any]:
        result = conn.execute(query)
        if not plain:
            return list(result.all())
        rows = result.cursor.fetchall()
        result.close()
        return list(rows)

    wanted = offset + limit + 1
    filters = list(filters)
    driver = None
    cap = max(MIN_PROBE, PROBE_FACTOR * wanted)
    best = cap
    for comparison in filters:
        if _drivable(comparison):
            count = probe(conn, comparison, cap)
            if count < best:
                driver, best = comparison, count
    rest = [c for c in filters if c is not driver]

    def base(query: Any) -> Any:
        if driver is None:
            return query
        side = _side(driver).alias("driver")
        on = [side.c.run_id == t.runs.c.run_id, side.c.key == driver.key,
              compare(side.c.value, driver.op, driver.value)]  # fmt: skip
        if driver.kind == "metric":
            on.append(side.c.is_nan.is_(False))
        return query.join(side, and_(*on))

    if order_by and order_by[0].kind == "metric" and wanted <= TOP_N_DEPTH:
        return _top_n(fetch, columns, base, project_ids, rest, order_by, include_deleted,
                      offset, limit)  # fmt: skip
    query = search_query(base(select(*columns)), project_ids, rest, order_by, include_deleted)
    return fetch(query.offset(offset).limit(limit + 1))


def _top_n(
    fetch: Callable[[Any], list[Any]],
    columns: Sequence[Any],
    base: Any,
    project_ids: Sequence[int] | None,
    filters: Sequence[Any],
    order_by: Sequence[Any],
    include_deleted: bool,
    offset: int,
    limit: int,
) -> list[Any]:
    first, others = order_by[0], order_by[1:]
    lm = t.latest_metrics.alias("top")
    value = lm.c.value.asc() if first.ascending else lm.c.value.desc()
    having = base(select(*columns)).join(
        lm, and_(lm.c.run_id == t.runs.c.run_id, lm.c.key == first.key)
    )
    if project_ids is not None:
        # "+column": SQLite may not read runs through an index of project_id here, so it
        # reads the metric's index in order (without statistics it could scan the project)
        having = having.where(sa.literal_column(f"+{t.runs.name}.project_id").in_(project_ids))
    # the metric's order first, then the rest of the search's order (ties, newest, id)
    query = search_query(having, None, filters, others, include_deleted, first=[value])
    wanted = offset + limit + 1
    rows = fetch(query.limit(wanted))
    if len(rows) == wanted:  # the page lies among runs that have the metric
        return rows[offset:]
    # every run with the metric is in rows: the rest of the page is runs without it
    without = search_query(base(select(*columns)), project_ids, filters, others, include_deleted)
    missing = ~exists().where(
        and_(t.latest_metrics.c.run_id == t.runs.c.run_id, t.latest_metrics.c.key == first.key)
    )
    skip = max(0, offset - len(rows))
    more = fetch(without.where(missing).offset(skip).limit(wanted - len(rows) - skip))
    return rows[offset:] + more
