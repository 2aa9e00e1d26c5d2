"""How long revision 0003 takes to move metric points from rows into blocks.

    .venv/bin/python bench/migrate_blocks.py [--points 1000000] [--runs 10] [--db-url URL]

Makes a tracking database at revision 0002 (a store downgraded to it), inserts the points
as ``lh_metrics`` rows (``--runs`` runs of one key), times the upgrade, and checks that
every history is whole afterwards. Default database: a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from hub_ext.experiments.store import SqlStore  # noqa: E402
from hub_ext.experiments.store.migrations import TRACKING  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000, help="points in all")
    parser.add_argument("--runs", type=int, default=10, help="runs they belong to")
    parser.add_argument("--db-url", default="", help="an empty database (default: SQLite)")
    args = parser.parse_args()
    url = args.db_url or f"sqlite:///{tempfile.mkdtemp(prefix='lhbench-migrate-')}/t.sqlite"
    store = SqlStore(url)
    project = store.create_project("migrate", owner="bench", group=None)
    runs = [store.create_run(project.id, user="bench").id for _ in range(args.runs)]
    TRACKING.downgrade(store.engine, "0002")
    store.close()
    engine = sa.create_engine(url)
    per_run = args.points // args.runs
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    sql = f"INSERT INTO lh_metrics VALUES ({', '.join([mark] * 6)})"
    with engine.begin() as conn:
        for run in runs:
            rows = [(run, "loss", i, 1_700_000_000_000 + i, 1 / (i + 1), False)
                    for i in range(per_run)]  # fmt: skip
            conn.exec_driver_sql(sql, rows)
    start = time.perf_counter()
    TRACKING.upgrade(engine)
    seconds = time.perf_counter() - start
    engine.dispose()
    store = SqlStore(url)
    held = sum(len(store.metric_history_columns(run, "loss")) for run in runs)
    store.close()
    if held != per_run * args.runs:
        raise SystemExit(f"{held} of {per_run * args.runs} points after the upgrade")
    print(f"upgrade to blocks: {held:,} points ({args.runs} runs) in {seconds:.1f} s")


if __name__ == "__main__":
    main()
