"""The run table (``GET /api/v1/runs/columns``) against the real app, SQLite and PostgreSQL.

It must answer the same runs, in the same order, as the run search, one list per column.
"""

from __future__ import annotations

import math

import pytest
import requests

from hub_ext.experiments.store import SqlStore
from hub_ext.experiments.store.entities import Metric, Param, Tag
from latticehub.client import TrackingClient, runs_dataframe
from tests.service.fakehub import experiments


@pytest.fixture
def service(store_uri, tmp_path):
    store = SqlStore(store_uri)
    with experiments(store, tmp_path / "blobs") as url:
        yield url, store
    store.close()


@pytest.fixture
def table_runs(service):
    """25 runs of ann's group project: L alternates 8/16, loss = i/100 (run 3: NaN, run 4: none)."""
    url, store = service
    client = TrackingClient(url, "tok-ann")
    project = client.project("table", "lqcd")["id"]
    ids = []
    for i in range(25):
        run = store.create_run(project, user="ann", name=f"r{i}", start_time=1000 + i)
        metrics = [] if i == 4 else [Metric("loss", math.nan if i == 3 else i / 100, 5, 0)]
        store.log_batch(run.id, metrics=metrics, params=[Param("L", "8" if i % 2 else "16")],
                        tags=[Tag("kind", "odd")] if i % 2 else [])  # fmt: skip
        ids.append(run.id)
    return client, project, ids


def test_the_table_holds_the_searched_runs_in_the_searchs_order(table_runs):
    client, project, ids = table_runs
    for filter, order_by in [
        ("", None),
        ("params.L = '8'", None),
        ("metrics.loss < 0.1", ["metrics.loss DESC"]),
        ("tags.kind = 'odd'", ["attributes.start_time ASC"]),
    ]:
        table = client.run_table(project, filter=filter, order_by=order_by)
        runs = list(client.search_runs(project, filter=filter, order_by=order_by))
        assert table["run_id"] == [r["id"] for r in runs], (filter, order_by)
        assert table["name"] == [r["name"] for r in runs]
        assert table["params.L"] == [r["params"]["L"] for r in runs]
        n = len(runs)
        assert all(len(column) == n for column in table.values())
    table = client.run_table(project)
    row = {name: table["name"].index(name) for name in ("r3", "r4", "r7")}
    assert table["metrics.loss"][row["r3"]] == "NaN"
    assert table["metrics.loss"][row["r4"]] is None  # no such metric: null
    assert table["metrics.loss"][row["r7"]] == 0.07
    assert table["tags.kind"][row["r7"]] == "odd" and table["tags.kind"][row["r4"]] is None
    assert table["user"][0] == "ann" and table["status"][0] == "RUNNING"


def test_pages_follow_one_another_without_gaps_or_repeats(table_runs):
    client, project, ids = table_runs
    seen, token, pages = [], None, 0
    while True:
        page, token = client.run_table_page(project, max_results=7, page_token=token)
        seen += page["run_id"]
        pages += 1
        if not token:
            break
    assert pages == 4 and sorted(seen) == sorted(ids) and len(set(seen)) == 25


def test_runs_dataframe_reads_the_table(table_runs):
    client, project, ids = table_runs
    frame = runs_dataframe(project, filter="params.L = '16'", client=client)
    assert len(frame) == 13 and set(frame["params.L"]) == {"16"}
    assert str(frame["start_time"].dtype).startswith("datetime64")
    assert frame["metrics.loss"].dtype == float
    assert frame["metrics.loss"].isna().sum() == 1  # r4 has none (r3, NaN, is odd: L = 8)


def test_the_table_shows_nothing_of_other_groups_and_checks_its_input(service, table_runs):
    url, _ = service
    client, project, ids = table_runs
    bob = TrackingClient(url, "tok-bob")
    assert bob.run_table(project)["run_id"] == []  # not bob's group: no rows, not a 403
    assert bob.run_table(None)["run_id"] == []
    headers = {"Authorization": "token tok-ann"}
    for params, words in [
        ({"max_results": 100_001}, "100000"),
        ({"filter": "metrics.loss <"}, "filter"),
        ({"project": "x"}, "project must be a project id"),
        ({"page_token": "!!"}, "token"),
    ]:
        r = requests.get(f"{url}/api/v1/runs/columns", params=params, headers=headers, timeout=10)
        assert r.status_code == 400, (params, r.text)
        assert words in r.json()["message"], (params, r.text)
