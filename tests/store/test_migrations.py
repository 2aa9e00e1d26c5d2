"""Alembic migrations of the tracking and usage databases, on SQLite and PostgreSQL.

The central test replays a database exactly as latticehub 0.1 (the last release without
Alembic) wrote it: its DDL statements and a row in every table, captured from that release's
own code (``release_0_1/``, see ``make_fixture.py`` there). Opening it with this code must
keep every row and leave the schema equal to the models (Alembic's autogenerate comparison
finds nothing).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from hub_ext.common.migrations import SchemaTooNew, compare
from hub_ext.experiments.store import JobState, RunStatus, SqlStore, open_backend
from hub_ext.experiments.store import schema as tracking_schema
from hub_ext.experiments.store.entities import Metric
from hub_ext.experiments.store.migrations import TABLE_PREFIX as TRACKING_PREFIX
from hub_ext.experiments.store.migrations import TRACKING
from hub_ext.quotas.accounting import open_usage_store
from hub_ext.quotas.accounting import schema as usage_schema
from hub_ext.quotas.accounting.migrations import TABLE_PREFIX as USAGE_PREFIX
from hub_ext.quotas.accounting.migrations import USAGE
from hub_ext.quotas.accounting.sql import SqlUsageStore
from latticehub.columnar import MetricColumns

RELEASE = Path(__file__).parent / "release_0_1"
#: serial primary keys, whose sequences a PostgreSQL database of the release had advanced
SERIALS = {"lh_projects": "id", "lh_run_events": "event_id", "lh_artifact_versions": "id",
           "usage_sessions": "id"}  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def rows_of(name: str) -> dict[str, list[dict]]:
    return json.loads((RELEASE / f"{name}.rows.json").read_text(encoding="utf-8"))


def write_release_database(url: str, name: str) -> None:
    """Create database ``name`` ("tracking" or "usage") as latticehub 0.1 did, and fill it."""
    engine = sa.create_engine(url)
    dialect = engine.dialect.name
    ddl = (RELEASE / f"{name}.{dialect}.sql").read_text(encoding="utf-8")
    try:
        with engine.begin() as conn:
            for statement in ddl.split(";\n\n"):
                if statement.strip(" ;\n"):
                    conn.exec_driver_sql(statement.strip(" ;\n"))
        with engine.begin() as conn:
            tables = sa.MetaData()
            tables.reflect(conn)
            for table, rows in rows_of(name).items():
                if rows:
                    conn.execute(tables.tables[table].insert(), rows)
            if dialect == "postgresql":
                for table, column in SERIALS.items():
                    if table in tables.tables:
                        conn.execute(sa.text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                            f"(SELECT max({column}) FROM {table}))"
                        ))  # fmt: skip
    finally:
        engine.dispose()


def dump(engine: sa.Engine, metadata: sa.MetaData) -> dict[str, list[dict]]:
    """Every row of every table of ``metadata``, in primary key order."""
    out = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(sa.select(table).order_by(*order)).mappings().all()
            out[table.name] = [dict(r) for r in rows]
    return out


def points_of(rows: list[dict]) -> list[tuple]:
    """``lh_metrics`` rows as sorted ``(run_id, key, step, timestamp, value)``, NaN as "nan"."""
    return sorted(
        (r["run_id"], r["key"], r["step"], r["timestamp"], "nan" if r["is_nan"] else r["value"])
        for r in rows
    )


def unpacked(blocks: list[dict]) -> list[tuple]:
    """The points of ``lh_metric_blocks`` rows, as :func:`points_of` gives them."""
    out = []
    for b in blocks:
        steps = np.frombuffer(b["step_data"], "<i8").tolist()
        stamps = np.frombuffer(b["time_data"], "<i8").tolist()
        values = np.frombuffer(b["value_data"], "<f8").tolist()
        assert len(steps) == b["count"] and (steps[0], steps[-1]) == (b["first_step"],
                                                                      b["last_step"])  # fmt: skip
        out += [(b["run_id"], b["key"], s, t, "nan" if v != v else v)
                for s, t, v in zip(steps, stamps, values, strict=True)]  # fmt: skip
    return sorted(out)


def schema_version(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(tracking_schema.schema_version.c.version)).scalar_one()


# -- the upgrade of a release database -------------------------------------------------
def test_release_0_1_tracking_database_upgrades_keeping_every_row(store_uri):
    write_release_database(store_uri, "tracking")
    before = rows_of("tracking")

    backend = open_backend(store_uri)
    try:
        engine = backend.tracking.engine
        assert TRACKING.current(engine) == TRACKING.head()
        after = dump(engine, tracking_schema.metadata)
        assert after.pop("lh_schema_version") == [{"version": tracking_schema.SCHEMA_VERSION}]
        before.pop("lh_schema_version")
        # metric points moved into blocks (0003): the same points, every one
        assert unpacked(after.pop("lh_metric_blocks")) == points_of(before.pop("lh_metrics"))
        assert after == before  # every other row of every table, unchanged
        assert all(before.values()), "the fixture has a row in every table"
        assert compare(TRACKING, engine, tracking_schema.metadata, TRACKING_PREFIX) == []
        # release 0.1 refuses a version above its own 4: the fence against old code
        assert tracking_schema.SCHEMA_VERSION > 4

        # the stores read the old rows and write new ones after them
        lqcd = backend.tracking.get_project_by_name("lqcd/phi4-L8")
        run = backend.tracking.search_runs(project_ids=[lqcd.id]).items[0]
        assert run.status is RunStatus.FINISHED and run.params == {"L": "8", "lr": "0.001"}
        job = backend.jobs.get_job("j" * 32)
        assert (job.state, job.node, job.resources) == (JobState.RUNNING, "gpu01", {"gpus": 1})
        assert [e.kind for e in backend.jobs.list_events(job.run_id)] == ["submitted", "started"]
        assert backend.registry.get_version(lqcd.id, "flow:best").version == 2
        newer = backend.tracking.create_project("after", owner="ann", group="lqcd")
        assert newer.id > max(p["id"] for p in before["lh_projects"])
        version = backend.registry.create_version(
            lqcd.id, "flow", run_id=run.id, sha256="d" * 64, size=1
        )
        assert version.version == 3
        backend.jobs.add_event(run.id, "note", "after the upgrade")
        after = dump(engine, tracking_schema.metadata)
    finally:
        backend.close()

    again = open_backend(store_uri)  # opening again changes nothing
    try:
        assert dump(again.tracking.engine, tracking_schema.metadata) == after
    finally:
        again.close()


def test_release_0_1_usage_database_is_adopted_keeping_every_row(store_uri):
    write_release_database(store_uri, "usage")
    store = open_usage_store(store_uri)
    try:
        assert USAGE.current(store.engine) == USAGE.head()
        assert dump(store.engine, usage_schema.metadata) == rows_of("usage")
        assert compare(USAGE, store.engine, usage_schema.metadata, USAGE_PREFIX) == []
        assert [s.id for s in store.open_sessions()] == ["c2"]
        assert store.get_cursor("engine-events") == 1_700_000_200.125
        from hub_ext.quotas.accounting.entities import Session

        assert store.record_start(Session(id="c3", group="lqcd", user="ann", start=1.0))
        with store.engine.connect() as conn:
            ids = conn.execute(sa.select(usage_schema.sessions_table.c.id)).scalars().all()
        assert sorted(ids) == [1, 2, 3]
    finally:
        store.close()


# -- fresh databases, several on one server ---------------------------------------------
def test_fresh_databases_match_the_models_and_share_one_database(store_uri):
    """Both services' tables in one database: each migration set sees only its own."""
    store = SqlStore(store_uri)
    usage = SqlUsageStore(store_uri)
    try:
        assert TRACKING.current(store.engine) == TRACKING.head()
        assert USAGE.current(usage.engine) == USAGE.head()
        assert compare(TRACKING, store.engine, tracking_schema.metadata, TRACKING_PREFIX) == []
        assert compare(USAGE, usage.engine, usage_schema.metadata, USAGE_PREFIX) == []
        assert schema_version(store.engine) == tracking_schema.SCHEMA_VERSION
    finally:
        store.close()
        usage.close()


def test_models_and_migrations_disagreeing_is_caught(store_uri):
    """The comparison the tests rely on does see a model change that has no revision."""
    store = SqlStore(store_uri)
    try:
        changed = sa.MetaData()
        for table in tracking_schema.metadata.sorted_tables:
            copied = table.to_metadata(changed).indexes
            for index in table.indexes:  # to_metadata drops Index.ddl_if (one database only)
                same = next(i for i in copied if i.name == index.name)
                same._ddl_if = index._ddl_if
        changed.tables["lh_runs"].append_column(sa.Column("priority", sa.Integer))
        diffs = compare(TRACKING, store.engine, changed, TRACKING_PREFIX)
        assert [(d[0], d[3].name) for d in diffs] == [("add_column", "priority")]
    finally:
        store.close()


# -- versions the code does not know, and going back ---------------------------------------
def test_a_database_from_a_newer_latticehub_is_refused(store_uri):
    SqlStore(store_uri).close()
    engine = sa.create_engine(store_uri)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE lh_alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(SchemaTooNew, match="newer latticehub.*upgrade latticehub"):
        SqlStore(store_uri)


def test_downgrade_hands_the_database_back_to_release_0_1(store_uri):
    store = SqlStore(store_uri)
    project = store.create_project("keep", owner="ann", group=None)
    run = store.create_run(project.id, user="ann")
    values = [0.5, math.nan, math.inf, -math.inf, -2.0] * 60_000  # 300,000 points: 3 blocks
    points = [Metric("loss", v, 7 + i % 3, i) for i, v in enumerate(values)]
    for start in range(0, len(points), 100_000):
        store.log_metric_columns(run.id, [columns_of(points[start : start + 100_000])])
    store.log_batch(run.id, metrics=[Metric("acc", 1.0, 5, 0), Metric("acc", 1.0, 5, 0)])
    want = {key: history_of(store, run.id, key) for key in ("loss", "acc")}
    assert len(want["loss"]) == 300_000 and len(want["acc"]) == 1
    try:
        assert TRACKING.downgrade(store.engine, "0001") == "0001"
        assert schema_version(store.engine) == 4  # what release 0.1 opens
        assert store.get_project(project.id).name == "keep"
        with store.engine.connect() as conn:  # release 0.1's table holds every point
            count = conn.execute(sa.text("SELECT count(*) FROM lh_metrics")).scalar_one()
        assert count == 300_001
    finally:
        store.close()
    again = SqlStore(store_uri)  # and the upgrade brings each one back
    try:
        assert TRACKING.current(again.engine) == TRACKING.head()
        assert schema_version(again.engine) == tracking_schema.SCHEMA_VERSION
        assert {key: history_of(again, run.id, key) for key in ("loss", "acc")} == want
    finally:
        again.close()


def columns_of(points: list) -> MetricColumns:
    from array import array

    return MetricColumns(
        points[0].key, array("q", [p.step for p in points]),
        array("q", [p.timestamp for p in points]), array("d", [p.value for p in points]),
    )  # fmt: skip


def history_of(store: SqlStore, run_id: str, key: str) -> list[tuple]:
    """The whole history as ``(step, timestamp, value)``, NaN as "nan" (comparable)."""
    got = store.metric_history_columns(run_id, key)
    return [(s, t, "nan" if v != v else v) for s, t, v in zip(
        got.steps.tolist(), got.timestamps.tolist(), got.values.tolist(), strict=True)]  # fmt: skip


def test_other_url_schemes_are_refused_with_the_fix():
    for open_ in (open_backend, open_usage_store):
        with pytest.raises(ValueError, match=r"sqlite:////.*postgresql://"):
            open_("mysql://db/tracking")


# -- several processes opening one new database at once ----------------------------------
OPEN_BOTH = textwrap.dedent(
    """
    import sys
    from hub_ext.experiments.store import open_backend
    from hub_ext.quotas.accounting import open_usage_store
    backend = open_backend(sys.argv[1])
    backend.tracking.create_project(sys.argv[2], owner="ann", group=None)
    open_usage_store(sys.argv[1]).close()
    backend.close()
    """
)


def test_processes_opening_a_new_database_at_once_upgrade_it_once(store_uri):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_BOTH, store_uri, f"p{i}"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    engine = sa.create_engine(store_uri)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM lh_alembic_version")).all() == [
                (TRACKING.head(),)
            ]
            assert conn.execute(sa.text("SELECT version_num FROM usage_alembic_version")).all() == [
                (USAGE.head(),)
            ]
            assert conn.execute(sa.text("SELECT version FROM lh_schema_version")).all() == [
                (tracking_schema.SCHEMA_VERSION,)
            ]
            names = conn.execute(sa.text("SELECT name FROM lh_projects ORDER BY name")).scalars()
            assert list(names) == ["p0", "p1", "p2", "p3"]
        assert compare(TRACKING, engine, tracking_schema.metadata, TRACKING_PREFIX) == []
    finally:
        engine.dispose()


# -- the admin command ------------------------------------------------------------------------
def test_db_command_shows_upgrades_checks_and_downgrades(tmp_path, capsys):
    from hub_ext.experiments.cli import main

    url = f"sqlite:///{tmp_path / 'tracking.sqlite'}"
    assert main(["db", "current", "--db-url", url]) == 0
    assert f"revision (none), newest {TRACKING.head()}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--db-url", url]) == 0
    assert main(["db", "check", "--db-url", url]) == 0
    assert "0 difference(s)" in capsys.readouterr().out
    assert main(["db", "downgrade", "0001", "--db-url", url]) == 0
    assert main(["db", "current", "--db-url", url]) == 0
    assert f"revision 0001, newest {TRACKING.head()}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["db", "downgrade", "--db-url", url])  # downgrade needs a revision
