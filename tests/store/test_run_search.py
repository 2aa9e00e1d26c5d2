"""The fast run-search paths answer exactly what the plain query answers (SQLite, PostgreSQL).

``run_search_sql`` picks a driving index by probing, and reads top-N by a metric from its
index; both are rewrites, so every page of every search here is compared with the plain
translation, with the thresholds lowered so that each path is taken.
"""

from __future__ import annotations

import itertools
import math

import pytest
from sqlalchemy import select

from hub_ext.experiments.search import parse_filter, parse_order_by
from hub_ext.experiments.store import SqlStore
from hub_ext.experiments.store import run_search_sql as rs
from hub_ext.experiments.store import schema as t
from hub_ext.experiments.store.entities import Metric, Param
from hub_ext.experiments.store.sqlquery import search_query

FILTERS = [
    "",
    "metrics.loss < 0.3",
    "metrics.loss >= 0.5 and params.L = '8'",
    "params.L = '16'",
    "metrics.loss = 0.2",
    "metrics.acc > 0.5 and metrics.loss <= 0.9",
    "params.L = 'none'",
]
ORDERS = [
    [],
    ["metrics.loss DESC"],
    ["metrics.loss ASC"],
    ["metrics.acc DESC", "metrics.loss ASC"],
    ["params.L ASC", "metrics.loss DESC"],
]
PAGES = [(0, 5), (0, 100), (3, 4), (20, 7), (38, 10)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    yield from _store(f"sqlite:///{tmp_path_factory.mktemp('rs') / 'runs.sqlite'}")


def _store(uri):
    store = SqlStore(uri)
    project = store.create_project("search", owner="ann", group=None)
    other = store.create_project("other", owner="ann", group=None)
    for i in range(48):
        run = store.create_run(other.id if i % 7 == 6 else project.id, user="ann",
                               start_time=1000 + (i % 9))  # fmt: skip  # ties in start time
        metrics = []
        if i % 5:  # every fifth run has no loss
            loss = math.nan if i == 13 else (i % 10) / 10  # ties in value, one NaN
            metrics.append(Metric("loss", loss, 5, 0))
        if i % 3 == 0:
            metrics.append(Metric("acc", (i % 4) / 4, 5, 0))
        params = [Param("L", "8" if i % 2 else "16")] if i % 11 else []
        store.log_batch(run.id, metrics=metrics, params=params)
    store.project_ids = [project.id]
    yield store
    store.close()


def plain(store, project_ids, filters, order_by, offset, limit):
    query = search_query(select(t.runs.c.run_id), project_ids, filters, order_by, False)
    with store.engine.connect() as conn:
        return [r[0] for r in conn.execute(query.offset(offset).limit(limit + 1))]


def fast(store, project_ids, filters, order_by, offset, limit):
    with store.engine.connect() as conn:
        rows = rs.search_rows(conn, [t.runs.c.run_id], project_ids=project_ids,
                              filters=filters, order_by=order_by, include_deleted=False,
                              offset=offset, limit=limit)  # fmt: skip
    return [r[0] for r in rows]


@pytest.mark.parametrize("min_probe", [1, 10_000])  # drive by any filter / only by a narrow one
def test_every_page_of_every_search_matches_the_plain_query(store, monkeypatch, min_probe):
    monkeypatch.setattr(rs, "MIN_PROBE", min_probe)
    monkeypatch.setattr(rs, "PROBE_FACTOR", 1)
    for text, order, (offset, limit) in itertools.product(FILTERS, ORDERS, PAGES):
        filters, order_by = parse_filter(text), parse_order_by(order)
        for projects in (store.project_ids, None):
            want = plain(store, projects, filters, order_by, offset, limit)
            got = fast(store, projects, filters, order_by, offset, limit)
            assert got == want, (text, order, offset, limit, projects)


def test_the_probe_counts_the_index_range_up_to_its_cap(store):
    (loss,) = parse_filter("metrics.loss < 0.3")
    with store.engine.connect() as conn:
        expected = sum(1 for i in range(48) if i % 5 and i != 13 and (i % 10) / 10 < 0.3)
        assert rs.probe(conn, loss, 1000) == expected == 10
        assert rs.probe(conn, loss, 5) == 5


@pytest.mark.postgres
def test_the_same_on_postgresql(monkeypatch):
    from tests.conftest import _drop, _postgres_url

    url, (admin, db) = _postgres_url()
    try:
        gen = _store(url)
        pg = next(gen)
        monkeypatch.setattr(rs, "MIN_PROBE", 1)
        monkeypatch.setattr(rs, "PROBE_FACTOR", 1)
        for text, order, (offset, limit) in itertools.product(FILTERS, ORDERS, PAGES[:3]):
            filters, order_by = parse_filter(text), parse_order_by(order)
            want = plain(pg, pg.project_ids, filters, order_by, offset, limit)
            assert fast(pg, pg.project_ids, filters, order_by, offset, limit) == want
        next(gen, None)
    finally:
        _drop(admin, db)
