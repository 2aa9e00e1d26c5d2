"""The query plans of the run searches that bench/tracking.py times, on a database of yours.

    .venv/bin/python bench/explain_runs.py sqlite:////tmp/runs1m.sqlite [--populate 1000000]
    .venv/bin/python bench/explain_runs.py postgresql://u:pw@127.0.0.1/db --project 1

Traces the SQL the store itself sends for three searches (a first page with two filters,
top-10 by a metric, 100,000 runs of a narrow filter) and prints each with its plan:
``EXPLAIN QUERY PLAN`` on SQLite, ``EXPLAIN (ANALYZE, COSTS OFF)`` on PostgreSQL (run
``ANALYZE`` first); then times the run table (``GET /runs/columns``'s store call) of the
last search. ``--populate N`` first fills a new project as the benchmark does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402

from hub_ext.experiments.search import parse_filter, parse_order_by  # noqa: E402
from hub_ext.experiments.store import SqlStore  # noqa: E402
from hub_ext.experiments.store import run_search_sql as rs  # noqa: E402
from hub_ext.experiments.store import schema as t  # noqa: E402

CASES = [
    ("first page of 100", "metrics.loss < 0.5 and params.L = '8'", [], 100),
    ("top 10 by metrics.loss DESC", "", ["metrics.loss DESC"], 10),
    ("100,000 runs of metrics.loss < 0.1", "metrics.loss < 0.1", [], 100_000),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the tracking database URL")
    parser.add_argument("--project", type=int, default=1, help="the project searched")
    parser.add_argument("--populate", type=int, default=0, help="runs to add first (0: none)")
    args = parser.parse_args()
    project = args.project
    if args.populate:
        from tracking import populate_experiments

        project = int(populate_experiments(args.url, "runs", args.populate, "bench"))
    store = SqlStore(args.url)
    sent: list[tuple[str, object]] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def trace(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        sent.append((statement, parameters))

    for title, text, order, limit in CASES:
        sent.clear()
        with store.engine.connect() as conn:
            start = time.perf_counter()
            rows = rs.search_rows(
                conn, [t.runs.c.run_id], project_ids=[project], filters=parse_filter(text),
                order_by=parse_order_by(order), include_deleted=False, offset=0, limit=limit,
            )  # fmt: skip
            ms = (time.perf_counter() - start) * 1000
            statement, parameters = sent[-1]
            print(f"\n### {title}: {len(rows)} rows read (the page and one more), {ms:.0f} ms")
            print(statement.strip(), "\n-- parameters:", parameters)
            cursor = conn.connection.dbapi_connection.cursor()
            if store.engine.dialect.name == "sqlite":
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                print("\n".join(f"    {row[-1]}" for row in cursor.fetchall()))
            else:
                cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters)
                print("\n".join(f"    {row[0]}" for row in cursor.fetchall()))
    start = time.perf_counter()
    table, _ = store.run_table(
        project_ids=[project], filters=parse_filter("metrics.loss < 0.1"), max_results=100_000
    )
    seconds = time.perf_counter() - start
    print(f"\n### the run table of those runs: {len(table['run_id'])} runs, {seconds:.2f} s")
    store.close()


if __name__ == "__main__":
    main()
