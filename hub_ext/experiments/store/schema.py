"""Tables of the tracking database (SQLAlchemy Core): the models its migrations produce.

Every store on this database reads them: tracking (:mod:`.sql`), the artifact registry
(:mod:`.registry`) and jobs (:mod:`.jobs`). A change here needs a revision in
:mod:`.migrations` (``tests/store/test_migrations.py`` fails until the two agree).

Metrics are a time series stored in blocks (``metric_blocks``, :mod:`.blocks`) plus a
latest-value table (``latest_metrics``) that run search and run pages read, so that they
never read history.
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
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

#: What ``lh_schema_version`` holds since Alembic owns the schema (revision 0002): above
#: the last hand-made version (4), so that releases before Alembic refuse the database.
#: Alembic's own revision is in ``lh_alembic_version``.
SCHEMA_VERSION = 5

metadata = MetaData()

#: the version number of releases before Alembic (kept as their fence, see SCHEMA_VERSION)
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
# Names are unique per group, and per owner among private projects (up to the hand-made
# version 3 one name was unique across the service; see migrations.release_0_1).
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
#: a search joins runs by id and reads what it filters, sorts and shows from this index
#: alone (SQLite, where a table row is a second lookup; version 0004)
Index(
    "ix_lh_runs_search",
    runs.c.run_id,
    runs.c.project_id,
    runs.c.lifecycle_stage,
    runs.c.start_time,
    runs.c.name,
    runs.c.user_id,
    runs.c.status,
    runs.c.end_time,
).ddl_if(dialect="sqlite")
#: the heartbeat sweeper's scan (RUNNING runs by last heartbeat); version 3
runs_status_heartbeat = Index("ix_lh_runs_status_heartbeat", runs.c.status, runs.c.heartbeat)

params = Table(
    "lh_params",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)
#: a search by a param's value (version 0004): ``(key, value)`` on SQLite; PostgreSQL's
#: B-tree entries hold at most 2704 bytes and a value may have 6000 characters, so there a
#: hash index of the value (the search's driving filter is an equality)
Index("ix_lh_params_key_value", params.c.key, params.c.value).ddl_if(dialect="sqlite")
Index("ix_lh_params_value_hash", params.c.value, postgresql_using="hash").ddl_if(
    dialect="postgresql"
)
#: the run table reads a page's params from this index alone (SQLite; version 0004)
Index("ix_lh_params_run_values", params.c.run_id, params.c.key, params.c.value).ddl_if(
    dialect="sqlite"
)

tags = Table(
    "lh_tags",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)
Index("ix_lh_tags_key", tags.c.key)

#: a metric's points, one row per key and write (:mod:`.blocks`); version 0003
metric_blocks = Table(
    "lh_metric_blocks",
    metadata,
    Column("run_id", String(32), ForeignKey("lh_runs.run_id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    # of the content: the same points written again (a retry) are the same row
    Column("digest", String(32), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("first_step", BigInteger, nullable=False),
    Column("last_step", BigInteger, nullable=False),
    # little-endian int64, int64, float64; sorted by (step, timestamp, value), no duplicates
    Column("step_data", LargeBinary, nullable=False),
    Column("time_data", LargeBinary, nullable=False),
    Column("value_data", LargeBinary, nullable=False),
)
Index(
    "ix_lh_metric_blocks_history",
    metric_blocks.c.run_id,
    metric_blocks.c.key,
    metric_blocks.c.first_step,
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
#: a search by a metric's value or top-N by it, from the index alone (version 0004)
Index(
    "ix_lh_latest_metrics_search",
    latest_metrics.c.key,
    latest_metrics.c.value,
    latest_metrics.c.is_nan,
    latest_metrics.c.run_id,
)
#: the run table reads a page's latest values from this index alone (SQLite; version 0004)
Index(
    "ix_lh_latest_metrics_run_values",
    latest_metrics.c.run_id,
    latest_metrics.c.key,
    latest_metrics.c.value,
    latest_metrics.c.is_nan,
).ddl_if(dialect="sqlite")

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
