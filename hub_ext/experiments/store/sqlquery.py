"""Translation of parsed run-search filters and orderings to SQL, and row conversion."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, exists, func

from ..likematch import LikePatternError, check_like_pattern
from . import schema as t
from .entities import ACTIVE, Metric
from .errors import invalid

ATTRIBUTE_COLUMNS = {
    "run_id": t.runs.c.run_id,
    "run_name": t.runs.c.name,
    "status": t.runs.c.status,
    "user_id": t.runs.c.user_id,
    "start_time": t.runs.c.start_time,
    "end_time": t.runs.c.end_time,
    "artifact_uri": t.runs.c.artifact_uri,
    "experiment_id": sa.cast(t.runs.c.project_id, sa.String),
}


def condition(comparison: Any) -> Any:
    """A WHERE clause for one parsed comparison (``search.Comparison``)."""
    kind, key, op, value = comparison.kind, comparison.key, comparison.op, comparison.value
    runs = t.runs
    if kind == "attribute":
        column = ATTRIBUTE_COLUMNS.get(key)
        if column is None:
            raise invalid(f"Invalid attribute key '{key}' in filter")
        return compare(column, op, value)
    if kind == "metric":
        lm = t.latest_metrics
        return exists().where(
            and_(
                lm.c.run_id == runs.c.run_id,
                lm.c.key == key,
                lm.c.is_nan.is_(False),
                compare(lm.c.value, op, value),
            )
        )
    table = {"param": t.params, "tag": t.tags}.get(kind)
    if table is None:
        raise invalid(f"Invalid filter entity type '{kind}'")
    return exists().where(
        and_(table.c.run_id == runs.c.run_id, table.c.key == key, compare(table.c.value, op, value))
    )


def compare(column: Any, op: str, value: Any) -> Any:
    """``column <op> value`` as a SQL condition (the ops of :mod:`..search`)."""
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op in ("LIKE", "ILIKE"):
        try:
            check_like_pattern(value, f"{op} pattern")
        except LikePatternError as e:
            raise invalid(str(e)) from None
        if op == "LIKE":
            return column.like(value)
        return func.lower(column).like(func.lower(value))
    if op == "IN":
        return column.in_(list(value))
    if op == "NOT IN":
        return column.not_in(list(value))
    raise invalid(f"Invalid comparator '{op}'")


def ordering(query: Any, order: Any, index: int) -> tuple[Any, list[Any]]:
    """Join what ``order`` sorts by; return the query and ORDER BY columns (missing last)."""
    runs = t.runs
    if order.kind == "attribute":
        column = ATTRIBUTE_COLUMNS.get(order.key)
        if column is None:
            raise invalid(f"Invalid order_by attribute '{order.key}'")
    else:
        table = {"metric": t.latest_metrics, "param": t.params, "tag": t.tags}.get(order.kind)
        if table is None:
            raise invalid(f"Invalid order_by entity type '{order.kind}'")
        alias = table.alias(f"order_{index}")
        query = query.outerjoin(
            alias, and_(alias.c.run_id == runs.c.run_id, alias.c.key == order.key)
        )
        column = alias.c.value
    missing_last = sa.case((column.is_(None), 1), else_=0)
    return query, [missing_last, column.asc() if order.ascending else column.desc()]


def search_query(
    query: Any,
    project_ids: Sequence[int] | None,
    filters: Sequence[Any],
    order_by: Sequence[Any],
    include_deleted: bool,
    first: Sequence[Any] = (),
) -> Any:
    """``query`` (a select from runs) narrowed by a run search and ordered as MLflow orders.

    Args:
        query: e.g. ``select(t.runs)`` or a select of some of its columns.
        project_ids: the projects searched (``None``: all).
        filters: parsed comparisons (``search.Comparison``).
        order_by: parsed orderings; then newest first, then by id (a stable order).
        include_deleted: also runs in the trash.
        first: ORDER BY columns that come before all of those.
    """
    runs = t.runs
    if project_ids is not None:
        query = query.where(runs.c.project_id.in_(list(project_ids)))
    if not include_deleted:
        query = query.where(runs.c.lifecycle_stage == ACTIVE)
    for comparison in filters:
        query = query.where(condition(comparison))
    orderings = []
    for i, order in enumerate(order_by):
        query, columns = ordering(query, order, i)
        orderings += columns
    return query.order_by(*first, *orderings, runs.c.start_time.desc(), runs.c.run_id)


def metric_entity(row: Any) -> Metric:
    """A :class:`Metric` from a metrics row."""
    value = math.nan if row.is_nan else row.value
    return Metric(row.key, value, row.timestamp, row.step)


def chunks(items: list, size: int) -> Iterable[list]:
    """``items`` in slices of ``size`` (keeps IN lists short)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
