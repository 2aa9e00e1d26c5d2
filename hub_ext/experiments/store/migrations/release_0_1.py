"""The tracking schema of latticehub 0.1 (its ``lh_schema_version`` 4), frozen: Alembic's baseline.

Releases before Alembic kept a version number in ``lh_schema_version`` and upgraded by
creating what was missing. Revision ``0001`` brings an empty database, or one any of those
releases wrote (versions 1 to 4), to exactly this schema, keeping every row:

- tables and indexes that are missing are created (versions 1-2 lack the registry tables,
  version 2 the heartbeat index, version 3 the per-group name indexes);
- version 3's unique constraint on the project name alone is dropped (PostgreSQL in place;
  SQLite rebuilds the table, see :func:`drop_legacy_name_constraint`).

Never edit these tables: a schema change is a new revision under ``versions/``. The models
the revisions must produce are in :mod:`hub_ext.experiments.store.schema`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Connection

#: the version number the release wrote into ``lh_schema_version``
VERSION = 4

metadata = MetaData()

schema_version = Table(
    "lh_schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

projects = Table(
    "lh_projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(500), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("group_name", String(255), nullable=True),
    Column("artifact_location", Text, nullable=False, default=""),
    Column("lifecycle_stage", String(32), nullable=False, default="active"),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
    Column("description", Text, nullable=False, default=""),
)
Index("ix_lh_projects_group", projects.c.group_name)
Index("ix_lh_projects_owner", projects.c.owner)
# Names are unique per group, and per owner among private projects (version 4; up to
# version 3 one name was unique across the service: constraint uq_lh_projects_name).
projects_name = Index("ix_lh_projects_name", projects.c.name)
projects_group_name = Index(
    "uq_lh_projects_group_name",
    projects.c.group_name,
    projects.c.name,
    unique=True,
    sqlite_where=projects.c.group_name.is_not(None),
    postgresql_where=projects.c.group_name.is_not(None),
)
projects_private_name = Index(
    "uq_lh_projects_private_name",
    projects.c.owner,
    projects.c.name,
    unique=True,
    sqlite_where=projects.c.group_name.is_(None),
    postgresql_where=projects.c.group_name.is_(None),
)
#: the unique constraint on the name alone that version 4 removed
LEGACY_NAME_CONSTRAINT = "uq_lh_projects_name"

project_tags = Table(
    "lh_project_tags",
    metadata,
    Column("project_id", Integer, ForeignKey("lh_projects.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

project_shares = Table(
    "lh_project_shares",
    metadata,
    Column("project_id", Integer, ForeignKey("lh_projects.id"), primary_key=True),
    Column("group_name", String(255), primary_key=True),
)
Index("ix_lh_project_shares_group", project_shares.c.group_name)

runs = Table(
    "lh_runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("project_id", Integer, ForeignKey("lh_projects.id"), nullable=False),
    Column("name", String(500), nullable=False, default=""),
    Column("user_id", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("heartbeat", BigInteger, nullable=True),
    Column("lifecycle_stage", String(32), nullable=False, default="active"),
    Column("artifact_uri", Text, nullable=False, default=""),
    Column("code", Text, nullable=False, default="{}"),
    Column("environment", Text, nullable=False, default="{}"),
    Column("failure", Text, nullable=False, default="{}"),
    Column("status_reason", Text, nullable=False, default=""),
)
Index("ix_lh_runs_project_start", runs.c.project_id, runs.c.start_time)
Index("ix_lh_runs_project_status", runs.c.project_id, runs.c.status)
Index("ix_lh_runs_user", runs.c.user_id)
#: the heartbeat sweeper's scan (RUNNING runs by last heartbeat); version 3
runs_status_heartbeat = Index("ix_lh_runs_status_heartbeat", runs.c.status, runs.c.heartbeat)

params = Table(
    "lh_params",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)
Index("ix_lh_params_key_value", params.c.key, params.c.value)

tags = Table(
    "lh_tags",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)
Index("ix_lh_tags_key", tags.c.key)

metrics = Table(
    "lh_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("step", BigInteger, primary_key=True),
    Column("timestamp", BigInteger, primary_key=True),
    Column("value", Float(precision=53), primary_key=True),
    Column("is_nan", Boolean, primary_key=True, default=False),
)

latest_metrics = Table(
    "lh_latest_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float(precision=53), nullable=False),
    Column("is_nan", Boolean, nullable=False, default=False),
)
Index("ix_lh_latest_metrics_key_value", latest_metrics.c.key, latest_metrics.c.value)

logs = Table(
    "lh_logs",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("stream", String(8), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("text", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
)

artifacts = Table(
    "lh_artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
)
Index("ix_lh_artifacts_sha", artifacts.c.sha256)


# -- jobs (version 2) ---------------------------------------------------------------------
jobs = Table(
    "lh_jobs",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), nullable=False),
    Column("project_id", Integer, ForeignKey("lh_projects.id"), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("group_name", String(255), nullable=False),
    Column("executor", String(16), nullable=False),
    Column("external_id", String(64), nullable=True),
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("resources", Text, nullable=False, default="{}"),
    Column("config", Text, nullable=False, default="{}"),
    Column("workdir", Text, nullable=False, default=""),
    Column("node", String(255), nullable=False, default=""),
    Column("exit_code", Integer, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("started", BigInteger, nullable=True),
    Column("ended", BigInteger, nullable=True),
    Column("resubmit_of", String(32), nullable=True),
)
Index("ix_lh_jobs_group_state", jobs.c.group_name, jobs.c.state)
Index("ix_lh_jobs_user_created", jobs.c.user_id, jobs.c.created)
Index("ix_lh_jobs_state", jobs.c.state)

run_events = Table(
    "lh_run_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False, default=""),
)
Index("ix_lh_run_events_run", run_events.c.run_id, run_events.c.event_id)

job_tokens = Table(
    "lh_job_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("job_id", String(32), ForeignKey("lh_jobs.job_id"), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("user_id", String(255), nullable=False),
    Column("hub_token_id", String(64), nullable=False, default=""),
    Column("expires", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)
Index("ix_lh_job_tokens_job", job_tokens.c.job_id)


# -- artifact versions, aliases and lineage (version 3) ------------------------------------
artifact_versions = Table(
    "lh_artifact_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project_id", Integer, ForeignKey("lh_projects.id"), nullable=False),
    Column("name", String(250), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), nullable=False),  # producer
    Column("path", String(1024), nullable=False, default=""),  # run artifact it came from
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("metadata", Text, nullable=False, default="{}"),  # JSON object
    UniqueConstraint("project_id", "name", "version", name="uq_lh_artifact_versions_version"),
)
Index("ix_lh_artifact_versions_sha", artifact_versions.c.sha256)
Index("ix_lh_artifact_versions_run", artifact_versions.c.run_id)

# An alias points at a version row (foreign key), so that neither a delete nor a move can
# leave it dangling, whatever the interleaving.
artifact_aliases = Table(
    "lh_artifact_aliases",
    metadata,
    Column("project_id", Integer, ForeignKey("lh_projects.id"), primary_key=True),
    Column("name", String(250), primary_key=True),
    Column("alias", String(128), primary_key=True),
    Column("version_id", Integer, ForeignKey("lh_artifact_versions.id"), nullable=False),
)
Index("ix_lh_artifact_aliases_version", artifact_aliases.c.version_id)

artifact_uses = Table(
    "lh_artifact_uses",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),  # consumer
    Column("version_id", Integer, ForeignKey("lh_artifact_versions.id"), primary_key=True),
    Column("time", BigInteger, nullable=False),
)
Index("ix_lh_artifact_uses_version", artifact_uses.c.version_id)


def create_or_lift(conn: Connection) -> None:
    """Make the 0.1 schema from nothing, or from what an earlier release left; keeps rows."""
    legacy = conn.dialect.has_table(conn, projects.name)
    metadata.create_all(conn, checkfirst=True)
    if legacy:
        drop_legacy_name_constraint(conn)
        for table in metadata.sorted_tables:
            for index in sorted(table.indexes, key=lambda i: i.name or ""):
                index.create(conn, checkfirst=True)
    row = conn.execute(schema_version.select()).first()
    if row is None:
        conn.execute(schema_version.insert().values(version=VERSION))
    elif row.version < VERSION:
        conn.execute(schema_version.update().values(version=VERSION))


def drop_legacy_name_constraint(conn: Connection) -> None:
    """Project names unique per group (and per owner among private projects), not globally.

    PostgreSQL drops the constraint in place. SQLite cannot drop a table's constraint: the
    table is rebuilt inside the upgrade's transaction (rows copied aside, the table re-created
    without the constraint, rows copied back, ids kept), with foreign keys deferred to the
    commit and checked before it, so that the runs, shares, tags, jobs and versions that point
    at projects stay attached. A failure rolls the whole upgrade back.
    """
    if conn.dialect.name == "sqlite":
        if sqlite_has_legacy_name_constraint(conn):
            _rebuild_sqlite_projects(conn)
    else:
        conn.execute(
            text(f"ALTER TABLE {projects.name} DROP CONSTRAINT IF EXISTS {LEGACY_NAME_CONSTRAINT}")
        )


def sqlite_has_legacy_name_constraint(conn: Connection) -> bool:
    """Whether ``lh_projects`` still has the unique constraint on ``name`` alone."""
    for index in conn.exec_driver_sql(f"PRAGMA index_list('{projects.name}')").all():
        # (seq, name, unique, origin, partial); origin 'u': a UNIQUE constraint of the table
        if index[2] and index[3] == "u":
            columns = conn.exec_driver_sql(f"PRAGMA index_info('{index[1]}')").all()
            if [c[2] for c in columns] == ["name"]:
                return True
    return False


def _rebuild_sqlite_projects(conn: Connection) -> None:
    columns = ", ".join(c.name for c in projects.columns)
    aside = "lh_projects_before_v4"
    before = conn.exec_driver_sql(f"SELECT count(*) FROM {projects.name}").scalar()
    conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # until this transaction ends
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{aside}")
    conn.exec_driver_sql(f"CREATE TEMP TABLE {aside} AS SELECT {columns} FROM {projects.name}")
    conn.exec_driver_sql(f"DROP TABLE {projects.name}")
    projects.create(conn)  # the version-4 table and its indexes
    # re-inserting each parent row settles the deferred foreign keys of the rows pointing at it
    conn.exec_driver_sql(
        f"INSERT INTO {projects.name} ({columns}) SELECT {columns} FROM temp.{aside}"
    )
    after = conn.exec_driver_sql(f"SELECT count(*) FROM {projects.name}").scalar()
    conn.exec_driver_sql(f"DROP TABLE temp.{aside}")
    dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if after != before or dangling:
        raise RuntimeError(
            f"upgrading the tracking database to schema 4 failed ({before} projects before, "
            f"{after} after, {len(dangling)} rows pointing at no project); nothing was "
            "changed: report this with the database file"
        )
