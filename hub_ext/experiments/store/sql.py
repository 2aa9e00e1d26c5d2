"""SQL tracking store on SQLite (WAL, the embedded default) or PostgreSQL (production)."""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, func, or_, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from latticehub.columnar import MetricColumns

from ...common.db import create_engine
from . import columns_sql, run_search_sql, run_table_sql, storage_sql
from . import schema as t
from .abstract import MAX_TABLE_ROWS, AbstractStore, decode_token, encode_token, now_ms
from .entities import (
    ACTIVE,
    DELETED,
    Artifact,
    LogLine,
    Metric,
    Param,
    Project,
    Run,
    RunStatus,
    Tag,
)
from .errors import (
    INVALID_STATE,
    TrackingError,
    invalid,
    name_taken,
    not_found,
)
from .jobs.sql import SqlJobStore
from .migrations import TRACKING
from .registry.sql import SqlArtifactRegistry
from .sqlquery import (
    chunks,
    metric_entity,
)
from .validation import check_batch, check_key, check_log_lines, check_name, check_run_id

_RUN_UPDATABLE = {
    "status",
    "end_time",
    "name",
    "heartbeat",
    "lifecycle_stage",
    "code",
    "environment",
    "failure",
    "status_reason",
}
_JSON_FIELDS = ("code", "environment", "failure")


#: Points of joined histories kept in memory for paged reads (24 bytes each: ~120 MB).
HISTORY_CACHE_POINTS = 5_000_000


class PointsCache:
    """A least-recently-used map whose entries weigh their points (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.weight = capacity, 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        """The value of ``key`` (now the most recent), or None."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: Any, value: Any, weight: int) -> None:
        """Keep ``value``; drop the least recent entries past the capacity."""
        if weight > self.capacity:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            self._items[key] = (value, weight)
            self.weight += weight
            while self.weight > self.capacity:
                _, (_, dropped) = self._items.popitem(last=False)
                self.weight -= dropped


class SqlStore(AbstractStore):
    """The tracking store on a SQLAlchemy engine; the schema is created/upgraded on open.

    Opening runs the database's Alembic migrations to the newest revision (see
    :mod:`.migrations`): an empty database gets the schema, one written by an older
    latticehub (Alembic or the hand-made ``lh_schema_version`` before it) is upgraded with
    every row kept, one written by a newer latticehub is refused.

    Args:
        uri: database URL, e.g. ``sqlite:////srv/latticehub/tracking.sqlite`` or
            ``postgresql://tracking:pw@db/tracking``.
    """

    def __init__(self, uri: str):
        self.uri = uri
        self.engine = create_engine(uri)
        TRACKING.upgrade(self.engine)
        self._jobs = SqlJobStore(self.engine)
        self._registry = SqlArtifactRegistry(self.engine)
        # metric rows go to the driver's executemany as tuples: building one SQLAlchemy
        # parameter dict per row was most of a 1000-metric batch's time (docs/benchmarks.md)
        self._insert_metrics_sql = columns_sql.insert_sql(columns_sql.placeholder(self.engine))
        self._upsert_latest_sql = columns_sql.upsert_latest_sql(
            columns_sql.placeholder(self.engine)
        )
        # joined histories (MLflow reads a long one page by page): points, not entries, count
        self._histories = PointsCache(HISTORY_CACHE_POINTS)

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def job_store(self) -> SqlJobStore:
        """The jobs, run events and job tokens on this database."""
        return self._jobs

    def artifact_registry(self) -> SqlArtifactRegistry:
        """The artifact registry on this database."""
        return self._registry

    # -- helpers -------------------------------------------------------------------
    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def _project_row(self, conn: Connection, project_id: int) -> Any:
        if not isinstance(project_id, int) or not 0 <= project_id < 2**63:
            raise not_found(f"Experiment with id '{project_id}'")  # no such row can exist
        row = conn.execute(select(t.projects).where(t.projects.c.id == project_id)).first()
        if row is None:
            raise not_found(f"Experiment with id '{project_id}'")
        return row

    def _project(self, conn: Connection, row: Any) -> Project:
        # tags and shares in one statement (every request that touches a run reads them)
        tags_and_shares = union_all(
            select(t.project_tags.c.key, t.project_tags.c.value).where(
                t.project_tags.c.project_id == row.id
            ),
            select(t.project_shares.c.group_name, sa.null()).where(
                t.project_shares.c.project_id == row.id
            ),
        )
        tags: dict[str, str] = {}
        shares: list[str] = []
        for name, value in conn.execute(tags_and_shares):
            if value is None:  # a tag's value is never NULL
                shares.append(name)
            else:
                tags[name] = value
        return Project(
            id=row.id,
            name=row.name,
            owner=row.owner,
            group=row.group_name,
            artifact_location=row.artifact_location,
            lifecycle_stage=row.lifecycle_stage,
            creation_time=row.creation_time,
            last_update_time=row.last_update_time,
            description=row.description,
            tags=tags,
            shared_with=tuple(sorted(shares)),
        )

    def _run_row(self, conn: Connection, run_id: str) -> Any:
        check_run_id(run_id)
        row = conn.execute(select(t.runs).where(t.runs.c.run_id == run_id)).first()
        if row is None:
            raise not_found(f"Run with id={run_id}")
        return row

    def _active_run_row(self, conn: Connection, run_id: str) -> Any:
        row = self._run_row(conn, run_id)
        if row.lifecycle_stage != ACTIVE:
            raise TrackingError(
                f"The run {run_id} must be in the 'active' state. Current state is "
                f"{row.lifecycle_stage}.",
                INVALID_STATE,
            )
        return row

    def _runs(self, conn: Connection, rows: Sequence[Any], *, data: bool = True) -> list[Run]:
        ids = [r.run_id for r in rows]
        if not ids:
            return []
        param_map: dict[str, dict[str, str]] = {i: {} for i in ids}
        tag_map: dict[str, dict[str, str]] = {i: {} for i in ids}
        metric_map: dict[str, dict[str, Metric]] = {i: {} for i in ids}
        for chunk in chunks(ids, 500) if data else ():
            for r in conn.execute(select(t.params).where(t.params.c.run_id.in_(chunk))):
                param_map[r.run_id][r.key] = r.value
            for r in conn.execute(select(t.tags).where(t.tags.c.run_id.in_(chunk))):
                tag_map[r.run_id][r.key] = r.value
            query = select(t.latest_metrics).where(t.latest_metrics.c.run_id.in_(chunk))
            for r in conn.execute(query):
                metric_map[r.run_id][r.key] = metric_entity(r)
        return [
            Run(
                id=r.run_id,
                project_id=r.project_id,
                name=r.name,
                user=r.user_id,
                status=RunStatus(r.status),
                start_time=r.start_time,
                end_time=r.end_time,
                heartbeat=r.heartbeat,
                lifecycle_stage=r.lifecycle_stage,
                artifact_uri=r.artifact_uri,
                params=param_map[r.run_id],
                tags=tag_map[r.run_id],
                metrics=metric_map[r.run_id],
                code=json.loads(r.code or "{}"),
                environment=json.loads(r.environment or "{}"),
                failure=json.loads(r.failure or "{}"),
                status_reason=r.status_reason,
            )
            for r in rows
        ]

    # -- projects ----------------------------------------------------------------------
    def create_project(
        self,
        name: str,
        *,
        owner: str,
        group: str | None,
        artifact_location: str | None = None,
        tags: dict[str, str] | None = None,
        description: str = "",
    ) -> Project:
        """Create a project; its artifacts live under ``mlflow-artifacts:/<id>``."""
        check_name(name, "Experiment")
        stamp = now_ms()
        try:
            with self.engine.begin() as conn:
                result = conn.execute(
                    t.projects.insert().values(
                        name=name,
                        owner=owner,
                        group_name=group,
                        artifact_location="",
                        lifecycle_stage=ACTIVE,
                        creation_time=stamp,
                        last_update_time=stamp,
                        description=description,
                    )
                )
                project_id = result.inserted_primary_key[0]  # type: ignore[index] # one row
                location = artifact_location or f"mlflow-artifacts:/{project_id}"
                conn.execute(
                    t.projects.update()
                    .where(t.projects.c.id == project_id)
                    .values(artifact_location=location)
                )
                for key, value in (tags or {}).items():
                    conn.execute(
                        t.project_tags.insert().values(project_id=project_id, key=key, value=value)
                    )
                return self._project(conn, self._project_row(conn, project_id))
        except IntegrityError:
            raise name_taken(name, group=group, owner=owner) from None

    def get_project(self, project_id: int) -> Project:
        """A project by id."""
        with self.engine.connect() as conn:
            return self._project(conn, self._project_row(conn, project_id))

    def projects_named(self, name: str) -> list[Project]:
        """Every project called ``name`` (deleted ones too), oldest first."""
        query = select(t.projects).where(t.projects.c.name == name).order_by(t.projects.c.id)
        with self.engine.connect() as conn:
            return [self._project(conn, row) for row in conn.execute(query).all()]

    def _search_projects(
        self,
        *,
        ids: Sequence[int] | None,
        name_like: str | None,
        include_deleted: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[Project], int | None]:
        query = select(t.projects)
        if ids is not None:
            query = query.where(t.projects.c.id.in_(list(ids)))
        if not include_deleted:
            query = query.where(t.projects.c.lifecycle_stage == ACTIVE)
        if name_like:
            query = query.where(t.projects.c.name.like(name_like))
        query = query.order_by(t.projects.c.id).offset(offset).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            items = [self._project(conn, r) for r in rows[:limit]]
        return items, (offset + limit if len(rows) > limit else None)

    def update_project(self, project_id: int, **changes: Any) -> Project:
        """Rename, describe, delete (``lifecycle_stage='deleted'``), restore or give a project.

        ``owner`` gives the project to another user (who to allow is the service's policy).
        """
        allowed = {"name", "description", "lifecycle_stage", "owner"}
        unknown = set(changes) - allowed
        if unknown:
            raise invalid(f"cannot change {', '.join(sorted(unknown))} of a project")
        if "name" in changes:
            check_name(changes["name"], "Experiment")
        if "owner" in changes:
            check_name(changes["owner"], "Owner")
        if changes.get("lifecycle_stage", ACTIVE) not in (ACTIVE, DELETED):
            raise invalid("lifecycle_stage must be 'active' or 'deleted'")
        row = None
        try:
            with self.engine.begin() as conn:
                row = self._project_row(conn, project_id)
                conn.execute(
                    t.projects.update()
                    .where(t.projects.c.id == project_id)
                    .values(**changes, last_update_time=now_ms())
                )
                return self._project(conn, self._project_row(conn, project_id))
        except IntegrityError:
            if row is None:
                raise
            raise name_taken(
                changes.get("name", row.name),
                group=row.group_name,
                owner=changes.get("owner", row.owner),
            ) from None

    def set_project_tag(self, project_id: int, tag: Tag) -> None:
        """Set a project tag."""
        with self.engine.begin() as conn:
            self._project_row(conn, project_id)
            stmt = self._insert(t.project_tags).values(
                project_id=project_id, key=tag.key, value=tag.value
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["project_id", "key"], set_={"value": tag.value}
                )
            )

    def delete_project_tag(self, project_id: int, key: str) -> None:
        """Remove a project tag."""
        pt = t.project_tags
        with self.engine.begin() as conn:
            self._project_row(conn, project_id)
            result = conn.execute(
                pt.delete().where(and_(pt.c.project_id == project_id, pt.c.key == key))
            )
            if result.rowcount == 0:
                raise not_found(f"No tag with name: {key} in experiment with id {project_id}. Tag")

    def share_project(self, project_id: int, group: str, share: bool = True) -> Project:
        """Share a project with ``group`` (or stop sharing)."""
        check_name(group, "Group")
        with self.engine.begin() as conn:
            row = self._project_row(conn, project_id)
            if share:
                stmt = self._insert(t.project_shares).values(
                    project_id=project_id, group_name=group
                )
                conn.execute(stmt.on_conflict_do_nothing())
            else:
                conn.execute(
                    t.project_shares.delete().where(
                        and_(
                            t.project_shares.c.project_id == project_id,
                            t.project_shares.c.group_name == group,
                        )
                    )
                )
            return self._project(conn, row)

    def visible_project_ids(
        self, *, user: str, groups: Sequence[str], admin: bool
    ) -> list[int] | None:
        """The user's private projects, the groups' projects and those shared with a group.

        Owning a group's project grants nothing by itself: an owner who left the group does
        not see it (``access.can_read_project`` is the same rule for one project).
        """
        if admin:
            return None
        groups = list(groups)
        shared = select(t.project_shares.c.project_id).where(
            t.project_shares.c.group_name.in_(groups)
        )
        query = select(t.projects.c.id).where(
            or_(
                and_(t.projects.c.owner == user, t.projects.c.group_name.is_(None)),
                t.projects.c.group_name.in_(groups),
                t.projects.c.id.in_(shared),
            )
        )
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(query)]

    # -- runs --------------------------------------------------------------------------
    def create_run(
        self,
        project_id: int,
        *,
        user: str,
        name: str = "",
        start_time: int | None = None,
        status: RunStatus = RunStatus.RUNNING,
        tags: Sequence[Tag] = (),
    ) -> Run:
        """Create a run; ``name`` also sets the ``mlflow.runName`` tag, as MLflow does."""
        run_id = uuid.uuid4().hex
        tag_map = {tag.key: tag.value for tag in tags}
        name = name or tag_map.get("mlflow.runName") or f"run-{run_id[:8]}"
        tag_map["mlflow.runName"] = name
        check_batch([], [], [Tag(k, v) for k, v in tag_map.items()])
        with self.engine.begin() as conn:
            project = self._project_row(conn, project_id)
            if project.lifecycle_stage != ACTIVE:
                raise TrackingError(
                    f"The experiment {project_id} must be in the 'active' state. Current state "
                    f"is {project.lifecycle_stage}.",
                    INVALID_STATE,
                )
            conn.execute(
                t.runs.insert().values(
                    run_id=run_id,
                    project_id=project_id,
                    name=name,
                    user_id=user,
                    status=RunStatus(status).value,
                    start_time=start_time if start_time is not None else now_ms(),
                    lifecycle_stage=ACTIVE,
                    artifact_uri=f"{project.artifact_location}/{run_id}/artifacts",
                )
            )
            if tag_map:
                conn.execute(
                    t.tags.insert(),
                    [{"run_id": run_id, "key": k, "value": v} for k, v in tag_map.items()],
                )
            return self._runs(conn, [self._run_row(conn, run_id)])[0]

    def get_run(self, run_id: str, *, data: bool = True) -> Run:
        """A run with its params, tags and latest metrics (only its row: ``data=False``)."""
        with self.engine.connect() as conn:
            return self._runs(conn, [self._run_row(conn, run_id)], data=data)[0]

    def get_run_and_project(self, run_id: str, *, data: bool = True) -> tuple[Run, Project]:
        """The run and its project on one connection (see :meth:`AbstractStore`'s)."""
        with self.engine.connect() as conn:
            run = self._runs(conn, [self._run_row(conn, run_id)], data=data)[0]
            return run, self._project(conn, self._project_row(conn, run.project_id))

    def update_run(self, run_id: str, **changes: Any) -> Run:
        """Change fields of a run; the JSON records replace the stored ones."""
        unknown = set(changes) - _RUN_UPDATABLE
        if unknown:
            raise invalid(f"cannot change {', '.join(sorted(unknown))} of a run")
        values = dict(changes)
        if "status" in values:
            try:
                values["status"] = RunStatus(values["status"]).value
            except ValueError:
                raise invalid(
                    f"status={values['status']!r}: use one of "
                    f"{', '.join(s.value for s in RunStatus)}"
                ) from None
        if "name" in values:
            check_name(values["name"], "Run")
        for key in _JSON_FIELDS:
            if key in values:
                values[key] = json.dumps(values[key], default=str)
        with self.engine.begin() as conn:
            self._run_row(conn, run_id)
            if values:
                conn.execute(t.runs.update().where(t.runs.c.run_id == run_id).values(**values))
            if "name" in values:
                stmt = self._insert(t.tags).values(
                    run_id=run_id, key="mlflow.runName", value=values["name"]
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["run_id", "key"], set_={"value": values["name"]}
                    )
                )
            return self._runs(conn, [self._run_row(conn, run_id)])[0]

    def _search_runs(
        self,
        *,
        project_ids: Sequence[int] | None,
        filters: Sequence[Any],
        order_by: Sequence[Any],
        include_deleted: bool,
        offset: int,
        limit: int,
    ) -> tuple[list[Run], int | None]:
        with self.engine.connect() as conn:
            rows = run_search_sql.search_rows(
                conn, [t.runs], project_ids=project_ids, filters=filters, order_by=order_by,
                include_deleted=include_deleted, offset=offset, limit=limit,
            )  # fmt: skip
            items = self._runs(conn, rows[:limit])
        return items, (offset + limit if len(rows) > limit else None)

    def run_table(
        self,
        *,
        project_ids: Sequence[int] | None,
        filters: Sequence[Any] = (),
        order_by: Sequence[Any] = (),
        page_token: str | None = None,
        max_results: int = MAX_TABLE_ROWS,
    ) -> tuple[dict[str, list[Any]], str | None]:
        """A page of a run search as columns (:mod:`.run_table_sql`)."""
        if isinstance(max_results, bool) or not 1 <= max_results <= MAX_TABLE_ROWS:
            raise invalid(f"max_results={max_results!r} must be in 1..{MAX_TABLE_ROWS}")
        offset = decode_token(page_token)
        with self.engine.connect() as conn:
            table, more = run_table_sql.run_table(
                conn, project_ids=project_ids, filters=filters, order_by=order_by,
                offset=offset, limit=max_results,
            )  # fmt: skip
        return table, encode_token(offset + max_results) if more else None

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[Tag] = (),
        columns: Sequence[MetricColumns] = (),
    ) -> None:
        """Write a batch in one transaction; retrying the same batch changes nothing."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        check_batch(metrics, params, tags, points=sum(len(c) for c in columns))
        for column in columns:
            check_key(column.key, "metric")
        with self.engine.begin() as conn:
            self._active_run_row(conn, run_id)
            if params:
                self._write_params(conn, run_id, params)
            for tag in tags:
                stmt = self._insert(t.tags).values(run_id=run_id, key=tag.key, value=tag.value)
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["run_id", "key"], set_={"value": tag.value}
                    )
                )
            if metrics:
                self._write_metrics(conn, run_id, metrics)
            if columns:
                self._write_columns(conn, run_id, columns)

    def _write_params(self, conn: Connection, run_id: str, params: list[Param]) -> None:
        keys = list({p.key for p in params})
        existing = dict(
            conn.execute(
                select(t.params.c.key, t.params.c.value).where(
                    and_(t.params.c.run_id == run_id, t.params.c.key.in_(keys))
                )
            ).all()
        )
        new = {}
        for param in params:
            old = existing.get(param.key)
            if old is not None and old != param.value:
                raise invalid(
                    f"Changing param values is not allowed. Param with key='{param.key}' was "
                    f"already logged with value='{old}' for run ID='{run_id}'. Attempted "
                    f"logging new value '{param.value}'."
                )
            if old is None:
                new[param.key] = param.value
        if new:
            stmt = self._insert(t.params).on_conflict_do_nothing()
            conn.execute(stmt, [{"run_id": run_id, "key": k, "value": v} for k, v in new.items()])
            # a concurrent writer may have won the insert with another value
            stored = dict(
                conn.execute(
                    select(t.params.c.key, t.params.c.value).where(
                        and_(t.params.c.run_id == run_id, t.params.c.key.in_(list(new)))
                    )
                ).all()
            )
            for key, value in new.items():
                if stored.get(key) != value:
                    raise invalid(
                        f"Changing param values is not allowed. Param with key='{key}' was "
                        f"already logged with value='{stored.get(key)}' for run ID='{run_id}'."
                    )

    def _write_metrics(self, conn: Connection, run_id: str, metrics: list[Metric]) -> None:
        columns: dict[str, MetricColumns] = {}
        for m in metrics:  # one block per key
            column = columns.get(m.key)
            if column is None:
                column = columns[m.key] = MetricColumns(m.key)
            column.steps.append(m.step)
            column.timestamps.append(m.timestamp)
            column.values.append(m.value)
        self._write_columns(conn, run_id, list(columns.values()))

    def log_metric_columns(self, run_id: str, columns: Sequence[MetricColumns]) -> int:
        """Write a compact batch in one transaction; retrying the same batch changes nothing."""
        for column in columns:
            check_key(column.key, "metric")
        with self.engine.begin() as conn:
            self._active_run_row(conn, run_id)
            self._write_columns(conn, run_id, columns)
        return sum(len(c) for c in columns)

    def _write_columns(
        self, conn: Connection, run_id: str, columns: Sequence[MetricColumns]
    ) -> None:
        """One block per key, and each key's newest point into ``latest_metrics``."""
        newest = columns_sql.write_columns(conn, run_id, columns, self._insert_metrics_sql)
        self._upsert_latest(conn, newest)

    def metric_history_columns(self, run_id: str, key: str) -> MetricColumns:
        """A metric's whole history as columns (its blocks joined)."""
        with self.engine.connect() as conn:
            self._run_row(conn, run_id)
            return self._history(conn, run_id, key)

    def _history(self, conn: Connection, run_id: str, key: str) -> MetricColumns:
        """The history, from the cache while no block was added since it was read."""
        version = columns_sql.history_version(conn, run_id, key)
        cached = self._histories.get((run_id, key))
        if cached is not None and cached[0] == version:
            return cached[1]
        columns = columns_sql.read_columns(conn, run_id, key, total=version[1])
        self._histories.put((run_id, key), (version, columns), len(columns))
        return columns

    def _upsert_latest(self, conn: Connection, rows: list[tuple]) -> None:
        """Each key's newest point into ``latest_metrics`` unless a newer one is there.

        One statement for the batch through the driver (a few keys per batch, and building
        the SQLAlchemy upsert per key was a tenth of a batch's time).
        """
        if not rows:
            return
        cursor: Any = conn.connection.cursor()
        try:
            cursor.executemany(self._upsert_latest_sql, rows)
        finally:
            cursor.close()

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a run tag."""
        with self.engine.begin() as conn:
            self._active_run_row(conn, run_id)
            result = conn.execute(
                t.tags.delete().where(and_(t.tags.c.run_id == run_id, t.tags.c.key == key))
            )
            if result.rowcount == 0:
                raise not_found(f"No tag with name: {key} in run with id {run_id}. Tag")

    def get_metric_history(
        self, run_id: str, key: str, *, offset: int = 0, limit: int = 50_000
    ) -> list[Metric]:
        """Points of one metric, by step, timestamp, value (a page of the joined blocks)."""
        with self.engine.connect() as conn:
            self._run_row(conn, run_id)
            history = self._history(conn, run_id, key)
        end = min(len(history), offset + limit)
        if offset >= end:
            return []
        steps = history.steps[offset:end].tolist()
        stamps = history.timestamps[offset:end].tolist()
        values = history.values[offset:end].tolist()
        return [Metric(key, v, ts, st) for st, ts, v in zip(steps, stamps, values, strict=True)]

    # -- logs ------------------------------------------------------------------------
    def append_logs(
        self, run_id: str, stream: str, offset: int, lines: Sequence[str], timestamp: int
    ) -> int:
        """Append lines at ``offset``; a retry of stored lines is a no-op, a gap an error."""
        lines = check_log_lines(stream, offset, list(lines) if isinstance(lines, tuple) else lines)
        with self.engine.begin() as conn:
            self._active_run_row(conn, run_id)
            count = self._log_count(conn, run_id, stream)
            if offset > count:
                raise TrackingError(
                    f"{stream} of run {run_id} has {count} lines; send lines from offset "
                    f"{count}, not {offset}",
                    INVALID_STATE,
                )
            fresh = [
                {"run_id": run_id, "stream": stream, "seq": offset + i, "text": text,
                 "timestamp": timestamp}
                for i, text in enumerate(lines)
                if offset + i >= count
            ]  # fmt: skip
            if fresh:
                conn.execute(self._insert(t.logs).on_conflict_do_nothing(), fresh)
            return max(count, offset + len(lines))

    def _log_count(self, conn: Connection, run_id: str, stream: str) -> int:
        value = conn.execute(
            select(func.max(t.logs.c.seq)).where(
                and_(t.logs.c.run_id == run_id, t.logs.c.stream == stream)
            )
        ).scalar()
        return 0 if value is None else value + 1

    def read_logs(
        self, run_id: str, stream: str, *, offset: int = 0, limit: int = 1000
    ) -> list[LogLine]:
        """Lines from ``offset`` on, at most ``limit``."""
        check_log_lines(stream, offset, [])
        query = (
            select(t.logs)
            .where(
                and_(t.logs.c.run_id == run_id, t.logs.c.stream == stream, t.logs.c.seq >= offset)
            )
            .order_by(t.logs.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            self._run_row(conn, run_id)
            return [LogLine(r.stream, r.seq, r.text, r.timestamp) for r in conn.execute(query)]

    def log_count(self, run_id: str, stream: str) -> int:
        """How many lines a stream holds."""
        check_log_lines(stream, 0, [])
        with self.engine.connect() as conn:
            self._run_row(conn, run_id)
            return self._log_count(conn, run_id, stream)

    # -- liveness ---------------------------------------------------------------------
    def expire_heartbeats(self, before: int, now: int, timeout_s: float) -> list[Run]:
        """Mark runs whose heartbeat stopped LOST (see the abstract method)."""
        runs = t.runs
        stale = and_(
            runs.c.status == RunStatus.RUNNING.value,
            runs.c.heartbeat.is_not(None),
            runs.c.heartbeat < before,
        )
        expired = []
        with self.engine.begin() as conn:
            rows = conn.execute(select(runs.c.run_id, runs.c.heartbeat).where(stale)).all()
            for row in rows:
                silent = (now - row.heartbeat) / 1000
                reason = (
                    f"no heartbeat for {silent:.0f} s (timeout {timeout_s:g} s): the process "
                    "died, was killed or lost its connection"
                )
                failure = {
                    "type": "HeartbeatLost", "message": reason, "last_heartbeat": row.heartbeat,
                }  # fmt: skip
                done = conn.execute(
                    runs.update()
                    .where(and_(runs.c.run_id == row.run_id, stale))
                    .values(
                        status=RunStatus.LOST.value, end_time=now, status_reason=reason,
                        failure=json.dumps(failure),
                    )
                )  # fmt: skip
                if done.rowcount:
                    expired.append(row.run_id)
            return self._runs(conn, [self._run_row(conn, r) for r in expired]) if expired else []

    # -- artifacts --------------------------------------------------------------------
    def add_artifact(self, run_id: str, path: str, sha256: str, size: int) -> Artifact:
        """Record the file at ``path`` (replacing an older one)."""
        stamp = now_ms()
        values = {"sha256": sha256, "size": size, "created": stamp}
        with self.engine.begin() as conn:
            self._active_run_row(conn, run_id)
            stmt = self._insert(t.artifacts).values(run_id=run_id, path=path, **values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["run_id", "path"], set_=values))
        return Artifact(run_id, path, sha256, size, stamp)

    def list_artifacts(self, run_id: str, prefix: str = "") -> list[Artifact]:
        """Files of a run whose path starts with ``prefix``."""
        a = t.artifacts
        query = select(a).where(a.c.run_id == run_id).order_by(a.c.path)
        if prefix:
            query = query.where(func.substr(a.c.path, 1, len(prefix)) == prefix)
        with self.engine.connect() as conn:
            self._run_row(conn, run_id)
            return [
                Artifact(r.run_id, r.path, r.sha256, r.size, r.created) for r in conn.execute(query)
            ]

    def get_artifact(self, run_id: str, path: str) -> Artifact:
        """One file of a run."""
        a = t.artifacts
        with self.engine.connect() as conn:
            self._run_row(conn, run_id)
            r = conn.execute(select(a).where(and_(a.c.run_id == run_id, a.c.path == path))).first()
        if r is None:
            raise not_found(f"Artifact '{path}' of run {run_id}")
        return Artifact(r.run_id, r.path, r.sha256, r.size, r.created)

    def delete_artifacts(self, run_id: str, path: str) -> list[Artifact]:
        """Forget one file, or every file under the directory ``path`` (see the ABC)."""
        a = t.artifacts
        prefix = path.rstrip("/") + "/"
        picked = and_(
            a.c.run_id == run_id,
            or_(a.c.path == path, func.substr(a.c.path, 1, len(prefix)) == prefix),
        )
        with self.engine.begin() as conn:
            self._active_run_row(conn, run_id)
            rows = list(conn.execute(select(a).where(picked)))
            if not rows:
                raise not_found(f"Artifact '{path}' of run {run_id}")
            conn.execute(a.delete().where(picked))
        return [Artifact(r.run_id, r.path, r.sha256, r.size, r.created) for r in rows]

    def bucket_bytes(self, group: str | None, owner: str | None = None) -> int:  # noqa: D102
        with self.engine.connect() as conn:
            return storage_sql.bucket_bytes(conn, group, owner)

    def bucket_holds(self, group: str | None, owner: str | None, sha256: str) -> bool:  # noqa: D102
        with self.engine.connect() as conn:
            return storage_sql.bucket_holds(conn, group, owner, sha256)

    def groups_with_projects(self) -> list[str]:  # noqa: D102
        with self.engine.connect() as conn:
            return list(storage_sql.groups_with_projects(conn))

    def referenced_blobs(self) -> set[str]:
        """Every sha256 some artifact points to (for garbage collection)."""
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(t.artifacts.c.sha256).distinct())}
