"""Write this directory's fixture with the release that had no Alembic (latticehub 0.1.0).

Run once, with that release checked out (``git checkout d39ff3b``), from the repository root:
``python tests/store/release_0_1/make_fixture.py [postgresql://...]``. It opens a tracking and
a usage database with that release's own code, fills every table through its public API,
and writes what the upgrade test (``tests/store/test_migrations.py``) replays:

- ``<db>.<dialect>.sql``: every DDL statement the release sent while creating the database,
  in order (for SQLite and, given a URL, PostgreSQL),
- ``<db>.rows.json``: every row of every table.

Kept for the record: the new code cannot regenerate it (its schema is Alembic's).
"""

from __future__ import annotations

import json
import math
import secrets
import sys
from pathlib import Path

import sqlalchemy as sa

from hub_ext.experiments.jobs.states import JobState
from hub_ext.experiments.jobs.store import Job, JobToken, SqlJobStore
from hub_ext.experiments.store import Metric, Param, SqlStore, Tag
from hub_ext.experiments.store import schema as t
from hub_ext.experiments.store.registry import SqlArtifactRegistry
from hub_ext.quotas.accounting import store as usage
from hub_ext.quotas.accounting.sessions import OBSERVED, Session

HERE = Path(__file__).parent
SHA = ["a" * 64, "b" * 64, "c" * 64]


def capture_ddl(engine: sa.Engine) -> list[str]:
    """Collect the DDL the engine sends (the release's create path, as it ran)."""
    statements: list[str] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _keep(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
            statements.append(statement.strip())

    return statements


def fill_tracking(store: SqlStore) -> None:
    """Rows in every table, through the release's API."""
    lqcd = store.create_project("phi4-L8", owner="ann", group="lqcd", tags={"k": "v"},
                                description="φ⁴ on 8×8")  # fmt: skip
    private = store.create_project("scratch", owner="ben", group=None)
    store.share_project(lqcd.id, "nuclear")
    run = store.create_run(lqcd.id, user="ann", name="first", start_time=1_700_000_000_000)
    store.log_batch(
        run.id,
        metrics=[Metric("loss", 1.5, 1_700_000_000_001, 0),
                 Metric("loss", 0.25, 1_700_000_000_002, 1),
                 Metric("ess", math.nan, 1_700_000_000_003, 1)],
        params=[Param("L", "8"), Param("lr", "0.001")],
        tags=[Tag("note", "ünïcode ✓")],
    )  # fmt: skip
    store.append_logs(run.id, "stdout", 0, ["hello", "world"], 1_700_000_000_004)
    store.append_logs(run.id, "stderr", 0, ["warn"], 1_700_000_000_005)
    store.add_artifact(run.id, "model.pt", SHA[0], 1234)
    store.add_artifact(run.id, "samples/x.npy", SHA[1], 2**40)
    store.update_run(run.id, status="FINISHED", end_time=1_700_000_001_000,
                     environment={"python": "3.11"}, failure={})  # fmt: skip
    second = store.create_run(private.id, user="ben", status="QUEUED")
    jobs = SqlJobStore(store.engine)
    jobs.create_job(Job(id="j" * 32, run_id=second.id, project_id=private.id, user="ben",
                        group="lqcd", executor="slurm", state=JobState.QUEUED,
                        created=1_700_000_002_000, resources={"gpus": 1}, config={"L": 8},
                        external_id="4711", workdir="/srv/jobs/j"))  # fmt: skip
    jobs.update_job("j" * 32, state=JobState.RUNNING, node="gpu01", started=1_700_000_003_000)
    jobs.add_event(second.id, "submitted", "sbatch 4711", 1_700_000_002_001)
    jobs.add_event(second.id, "started", "on gpu01", 1_700_000_003_001)
    jobs.add_token(JobToken(token_hash="f" * 64, job_id="j" * 32, run_id=second.id, user="ben",
                            expires=1_800_000_000_000, hub_token_id="17"))  # fmt: skip
    jobs.add_token(JobToken(token_hash="e" * 64, job_id="j" * 32, run_id=second.id, user="ben",
                            expires=1_700_000_000_000, revoked=True))  # fmt: skip
    registry = SqlArtifactRegistry.for_store(store)
    v1 = registry.create_version(lqcd.id, "flow", run_id=run.id, sha256=SHA[0], size=1234,
                                 path="model.pt", description="first",
                                 metadata={"ess": 0.5})  # fmt: skip
    registry.create_version(lqcd.id, "flow", run_id=run.id, sha256=SHA[2], size=99,
                            aliases=["best"])  # fmt: skip
    registry.record_use(second.id, v1.id)


def fill_usage(store: usage.SqlUsageStore) -> None:
    """Rows in both usage tables, through the release's API."""
    store.record_start(Session(id="c1", group="lqcd", user="ann", server="", node="n1",
                               image="img:1", gpus=1, cpus=2.5, mem_bytes=8 * 2**30,
                               start=1_700_000_000.25))  # fmt: skip
    store.record_end("c1", 1_700_003_600.5)
    store.record_start(Session(id="c2", group="nuclear", user="dan", start=1_700_000_100.0),
                       source=OBSERVED)  # fmt: skip
    store.set_cursor("engine-events", 1_700_000_200.125)


def dump_rows(engine: sa.Engine, metadata: sa.MetaData) -> dict[str, list[dict]]:
    """Every row of every table, in primary key order."""
    out = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(sa.select(table).order_by(*order)).mappings().all()
            out[table.name] = [dict(r) for r in rows]
    return out


def write(name: str, dialect: str, ddl: list[str]) -> None:
    (HERE / f"{name}.{dialect}.sql").write_text(";\n\n".join(ddl) + ";\n", encoding="utf-8")


def main(pg_url: str | None) -> None:
    """Write the fixture for SQLite (and PostgreSQL when a server URL is given)."""
    targets = [("sqlite", None)] + ([("postgresql", pg_url)] if pg_url else [])
    for dialect, server in targets:
        if server:
            db = f"lh_fixture_{secrets.token_hex(4)}"
            admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
            tracking_url = usage_url = server.rsplit("/", 1)[0] + f"/{db}"
        else:
            tmp = HERE / "_tmp"
            tmp.mkdir(exist_ok=True)
            tracking_url = f"sqlite:///{tmp / 'tracking.sqlite'}"
            usage_url = f"sqlite:///{tmp / 'usage.sqlite'}"
        # capture from the engines the stores create: patch create_engine to listen first
        from hub_ext.common import db as common_db

        captured: dict[str, list[str]] = {}
        real = common_db.create_engine

        def listening(uri: str, _real=real, _captured=captured) -> sa.Engine:
            engine = _real(uri)
            _captured.setdefault(uri + str(len(_captured)), capture_ddl(engine))
            return engine

        sys.modules["hub_ext.experiments.store.sql"].create_engine = listening
        usage.create_engine = listening
        store = SqlStore(tracking_url)
        fill_tracking(store)
        tracking_ddl = list(captured.values())[-1]
        usage_store = usage.SqlUsageStore(usage_url)
        fill_usage(usage_store)
        usage_ddl = list(captured.values())[-1]
        write("tracking", dialect, tracking_ddl)
        write("usage", dialect, usage_ddl)
        if dialect == "sqlite":
            rows = {"tracking": dump_rows(store.engine, t.metadata),
                    "usage": dump_rows(usage_store.engine, usage.metadata)}  # fmt: skip
            for name, data in rows.items():
                (HERE / f"{name}.rows.json").write_text(
                    json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
                )
        store.close()
        usage_store.close()
        if server:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE "{db}" WITH (FORCE)'))
        else:
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
