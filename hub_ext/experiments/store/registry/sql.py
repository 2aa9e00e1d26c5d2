"""The artifact registry on the tracking database (SQLite or PostgreSQL).

Tables ``lh_artifact_versions``, ``lh_artifact_aliases`` and ``lh_artifact_uses`` of
:mod:`hub_ext.experiments.store.schema`, beside the tracking and job stores.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from .. import schema as t
from ..abstract import now_ms
from ..errors import CONFLICT, TrackingError, invalid, not_found
from ..sqlquery import chunks
from ..validation import check_run_id
from .abstract import AbstractArtifactRegistry
from .entities import (
    _SHA_RE,
    LATEST,
    MAX_ATTEMPTS,
    MAX_DESCRIPTION,
    RESERVED_ALIASES,
    ArtifactName,
    ArtifactUse,
    ArtifactVersion,
    Lineage,
    _metadata_text,
    check_alias,
    check_artifact_name,
)

# -- SQL --------------------------------------------------------------------------------
_V = t.artifact_versions
_A = t.artifact_aliases
_U = t.artifact_uses


class SqlArtifactRegistry(AbstractArtifactRegistry):
    """The registry on the tracking database's engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def for_store(cls, store: Any) -> AbstractArtifactRegistry:
        """The registry on a tracking store's database (``store.artifact_registry()``).

        Raises:
            TypeError: for a store that keeps no registry (pass ``make_app(registry=...)``).
        """
        registry = store.artifact_registry() if hasattr(store, "artifact_registry") else None
        if registry is None:
            raise TypeError(
                f"{type(store).__name__} keeps no artifact registry: pass "
                "make_app(registry=...) explicitly"
            )
        return registry

    # -- helpers ------------------------------------------------------------------------
    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def _versions(self, conn: Connection, rows: Sequence[Any]) -> list[ArtifactVersion]:
        ids = [r.id for r in rows]
        names: dict[int, list[str]] = {i: [] for i in ids}
        for chunk in chunks(ids, 500):
            query = select(_A.c.version_id, _A.c.alias).where(_A.c.version_id.in_(chunk))
            for version_id, alias in conn.execute(query.order_by(_A.c.alias)):
                names[version_id].append(alias)
        return [
            ArtifactVersion(
                id=r.id,
                project_id=r.project_id,
                name=r.name,
                version=r.version,
                run_id=r.run_id,
                path=r.path,
                sha256=r.sha256,
                size=r.size,
                created=r.created,
                description=r.description or "",
                metadata=json.loads(r.metadata or "{}"),
                aliases=tuple(names[r.id]),
            )
            for r in rows
        ]

    def _one(self, conn: Connection, where: Any, what: str) -> ArtifactVersion:
        row = conn.execute(select(_V).where(where)).first()
        if row is None:
            raise not_found(what)
        return self._versions(conn, [row])[0]

    @staticmethod
    def _at(project_id: int, name: str, version: int) -> Any:
        return and_(_V.c.project_id == project_id, _V.c.name == name, _V.c.version == version)

    # -- versions ---------------------------------------------------------------------------
    def create_version(  # noqa: D102
        self,
        project_id: int,
        name: str,
        *,
        run_id: str,
        sha256: str,
        size: int,
        path: str = "",
        description: str = "",
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
    ) -> ArtifactVersion:
        check_artifact_name(name)
        check_run_id(run_id)
        if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
            raise invalid(f"{sha256!r} is not a sha256 hex digest")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise invalid(f"size={size!r} must be a non-negative integer")
        if not isinstance(path, str) or len(path) > 1024:
            raise invalid("path must be a string of at most 1024 characters")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise invalid(f"description must be a string of at most {MAX_DESCRIPTION} characters")
        meta = _metadata_text(metadata)
        wanted = sorted({check_alias(a) for a in aliases})
        next_number = (
            select(func.coalesce(func.max(_V.c.version), 0) + 1)
            .where(and_(_V.c.project_id == project_id, _V.c.name == name))
            .scalar_subquery()
        )
        for attempt in range(MAX_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    run = conn.execute(
                        select(t.runs.c.project_id).where(t.runs.c.run_id == run_id)
                    ).first()
                    if run is None:
                        raise not_found(f"Run with id={run_id}")
                    if run.project_id != project_id:
                        raise invalid(
                            f"run {run_id} belongs to project {run.project_id}, not "
                            f"{project_id}: register its artifacts in project {run.project_id}"
                        )
                    version_id = conn.execute(
                        _V.insert()
                        .values(
                            project_id=project_id,
                            name=name,
                            version=next_number,
                            run_id=run_id,
                            path=path,
                            sha256=sha256,
                            size=size,
                            created=now_ms(),
                            description=description,
                            metadata=meta,
                        )
                        .returning(_V.c.id)
                    ).scalar_one()
                    for alias in wanted:
                        self._point(conn, project_id, name, alias, version_id)
                    return self._one(conn, _V.c.id == version_id, f"Artifact version {version_id}")
            except IntegrityError:
                # another creation took the number: try the next one
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise TrackingError(
            f"could not number a new version of {name!r} after {MAX_ATTEMPTS} attempts (too "
            "many concurrent creations): try again",
            CONFLICT,
        )

    def _get_version(self, project_id: int, name: str, selector: int | str) -> ArtifactVersion:  # noqa: D102
        with self.engine.connect() as conn:
            if isinstance(selector, int):
                return self._one(
                    conn,
                    self._at(project_id, name, selector),
                    f"Artifact version {name}:v{selector} in project {project_id}",
                )
            if selector == LATEST:
                row = conn.execute(
                    select(_V)
                    .where(and_(_V.c.project_id == project_id, _V.c.name == name))
                    .order_by(_V.c.version.desc())
                    .limit(1)
                ).first()
                if row is None:
                    raise not_found(f"Artifact {name!r} in project {project_id}")
                return self._versions(conn, [row])[0]
            alias = conn.execute(
                select(_A.c.version_id).where(
                    and_(_A.c.project_id == project_id, _A.c.name == name, _A.c.alias == selector)
                )
            ).first()
            if alias is None:
                raise not_found(f"Alias {name}:{selector} in project {project_id}")
            return self._one(conn, _V.c.id == alias.version_id, f"Artifact {name}:{selector}")

    def get_version_by_id(self, version_id: int) -> ArtifactVersion:  # noqa: D102
        with self.engine.connect() as conn:
            return self._one(conn, _V.c.id == version_id, f"Artifact version {version_id}")

    def _list_versions(  # noqa: D102
        self, project_id: int, name: str | None, offset: int, limit: int
    ) -> tuple[list[ArtifactVersion], int | None]:
        query = select(_V).where(_V.c.project_id == project_id)
        if name is not None:
            query = query.where(_V.c.name == name)
        query = query.order_by(_V.c.name, _V.c.version.desc()).offset(offset).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            items = self._versions(conn, rows[:limit])
        return items, (offset + limit if len(rows) > limit else None)

    def _list_names(  # noqa: D102
        self, project_id: int, offset: int, limit: int
    ) -> tuple[list[ArtifactName], int | None]:
        query = (
            select(_V.c.name, func.max(_V.c.version).label("top"), func.count().label("n"))
            .where(_V.c.project_id == project_id)
            .group_by(_V.c.name)
            .order_by(_V.c.name)
            .offset(offset)
            .limit(limit + 1)
        )
        with self.engine.connect() as conn:
            groups = conn.execute(query).all()
            page = groups[:limit]
            names = [g.name for g in page]
            latest: dict[str, Any] = {}
            aliases: dict[str, dict[str, int]] = {n: {} for n in names}
            for chunk in chunks(names, 500):
                rows = conn.execute(
                    select(_V).where(
                        and_(
                            _V.c.project_id == project_id,
                            sa.tuple_(_V.c.name, _V.c.version).in_(
                                [(g.name, g.top) for g in page if g.name in chunk]
                            ),
                        )
                    )
                ).all()
                for version in self._versions(conn, rows):
                    latest[version.name] = version
                alias_rows = conn.execute(
                    select(_A.c.name, _A.c.alias, _V.c.version)
                    .join(_V, _V.c.id == _A.c.version_id)
                    .where(and_(_A.c.project_id == project_id, _A.c.name.in_(chunk)))
                    .order_by(_A.c.alias)
                )
                for alias_name, alias, number in alias_rows:
                    aliases[alias_name][alias] = number
        items = [
            ArtifactName(project_id, g.name, latest[g.name], g.n, aliases[g.name])
            for g in page
            if g.name in latest  # deleted between the two queries: left out
        ]
        return items, (offset + limit if len(groups) > limit else None)

    def version_groups(  # noqa: D102
        self, project_id: int | None = None, name: str | None = None
    ) -> Iterator[list[ArtifactVersion]]:
        keys = select(_V.c.project_id, _V.c.name).distinct()
        if project_id is not None:
            keys = keys.where(_V.c.project_id == project_id)
        if name is not None:
            keys = keys.where(_V.c.name == name)
        with self.engine.connect() as conn:
            pairs = conn.execute(keys.order_by(_V.c.project_id, _V.c.name)).all()
        for pid, group_name in pairs:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(_V)
                    .where(and_(_V.c.project_id == pid, _V.c.name == group_name))
                    .order_by(_V.c.version)
                ).all()
                yield self._versions(conn, rows)

    def delete_version(self, project_id: int, name: str, version: int) -> ArtifactVersion:  # noqa: D102
        check_artifact_name(name)
        what = f"Artifact version {name}:v{version} in project {project_id}"
        try:
            with self.engine.begin() as conn:
                found = self._one(conn, self._at(project_id, name, version), what)
                if found.aliases:
                    shown = ", ".join(found.aliases)
                    raise TrackingError(
                        f"{found.ref} has the alias(es) {shown}: move or delete them first "
                        f"(PUT or DELETE .../artifacts/{name}/aliases/<alias>)",
                        CONFLICT,
                    )
                newer = conn.execute(
                    select(_V.c.id)
                    .where(
                        and_(
                            _V.c.project_id == project_id,
                            _V.c.name == name,
                            _V.c.version > version,
                        )
                    )
                    .limit(1)
                ).first()
                if newer is None:
                    raise TrackingError(
                        f"{found.ref} is the latest version of {name!r} and cannot be deleted "
                        "(version numbers are never reused): register a newer version first",
                        CONFLICT,
                    )
                conn.execute(_U.delete().where(_U.c.version_id == found.id))
                conn.execute(_V.delete().where(_V.c.id == found.id))
                return found
        except IntegrityError:
            raise TrackingError(
                f"{name}:v{version} got an alias or a use while it was being deleted: look at "
                "it again and retry",
                CONFLICT,
            ) from None

    # -- aliases ----------------------------------------------------------------------------
    def _point(
        self, conn: Connection, project_id: int, name: str, alias: str, version_id: int
    ) -> None:
        stmt = self._insert(_A).values(
            project_id=project_id, name=name, alias=alias, version_id=version_id
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["project_id", "name", "alias"],
                set_={"version_id": stmt.excluded.version_id},
            )
        )

    def set_alias(self, project_id: int, name: str, alias: str, version: int) -> ArtifactVersion:  # noqa: D102
        check_artifact_name(name)
        check_alias(alias)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise invalid(f"version={version!r} must be a version number (1, 2, ...)")
        what = f"Artifact version {name}:v{version} in project {project_id}"
        try:
            with self.engine.begin() as conn:
                row = conn.execute(select(_V.c.id).where(self._at(project_id, name, version)))
                found = row.first()
                if found is None:
                    raise not_found(what)
                self._point(conn, project_id, name, alias, found.id)
                return self._one(conn, _V.c.id == found.id, what)
        except IntegrityError:
            raise not_found(what) from None  # deleted meanwhile

    def delete_alias(self, project_id: int, name: str, alias: str) -> None:  # noqa: D102
        check_artifact_name(name)
        if not isinstance(alias, str) or alias in RESERVED_ALIASES:
            raise invalid(f"alias {alias!r} cannot be deleted: it is not a settable alias")
        with self.engine.begin() as conn:
            done = conn.execute(
                _A.delete().where(
                    and_(_A.c.project_id == project_id, _A.c.name == name, _A.c.alias == alias)
                )
            )
            if done.rowcount == 0:
                raise not_found(f"Alias {name}:{alias} in project {project_id}")

    # -- lineage ----------------------------------------------------------------------------
    def record_use(self, run_id: str, version_id: int) -> ArtifactUse:  # noqa: D102
        check_run_id(run_id)
        try:
            with self.engine.begin() as conn:
                run = conn.execute(
                    select(t.runs.c.project_id).where(t.runs.c.run_id == run_id)
                ).first()
                if run is None:
                    raise not_found(f"Run with id={run_id}")
                version = self._one(conn, _V.c.id == version_id, f"Artifact version {version_id}")
                stmt = self._insert(_U).values(run_id=run_id, version_id=version_id, time=now_ms())
                conn.execute(stmt.on_conflict_do_nothing())
                stamp = conn.execute(
                    select(_U.c.time).where(
                        and_(_U.c.run_id == run_id, _U.c.version_id == version_id)
                    )
                ).scalar_one()
                return ArtifactUse(run_id, run.project_id, version, stamp)
        except IntegrityError:
            raise not_found(f"Artifact version {version_id}") from None  # deleted meanwhile

    def _uses(self, conn: Connection, where: Any) -> list[ArtifactUse]:
        rows = conn.execute(
            select(_U.c.run_id, _U.c.version_id, _U.c.time, t.runs.c.project_id)
            .join(t.runs, t.runs.c.run_id == _U.c.run_id)
            .where(where)
            .order_by(_U.c.time, _U.c.run_id, _U.c.version_id)
        ).all()
        ids = sorted({r.version_id for r in rows})
        versions: dict[int, ArtifactVersion] = {}
        for chunk in chunks(ids, 500):
            found = conn.execute(select(_V).where(_V.c.id.in_(chunk))).all()
            versions.update((v.id, v) for v in self._versions(conn, found))
        return [
            ArtifactUse(r.run_id, r.project_id, versions[r.version_id], r.time)
            for r in rows
            if r.version_id in versions
        ]

    def lineage(self, version: ArtifactVersion) -> Lineage:  # noqa: D102
        with self.engine.connect() as conn:
            uses = self._uses(conn, _U.c.version_id == version.id)
        return Lineage(version, version.run_id, tuple(uses))

    def uses_of_run(self, run_id: str) -> list[ArtifactUse]:  # noqa: D102
        check_run_id(run_id)
        with self.engine.connect() as conn:
            return self._uses(conn, _U.c.run_id == run_id)

    # -- blob references ------------------------------------------------------------------
    def referenced_among(self, shas: Iterable[str]) -> set[str]:  # noqa: D102
        wanted = sorted(set(shas))
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in chunks(wanted, 500):
                for column in (t.artifacts.c.sha256, _V.c.sha256):
                    query = select(column).where(column.in_(chunk)).distinct()
                    found.update(r[0] for r in conn.execute(query))
        return found

    def referenced_blobs(self) -> set[str]:  # noqa: D102
        query = sa.union(select(t.artifacts.c.sha256), select(_V.c.sha256))
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(query)}

    def has_references(self) -> bool:  # noqa: D102
        with self.engine.connect() as conn:
            for column in (t.artifacts.c.sha256, _V.c.sha256):
                if conn.execute(select(column).limit(1)).first() is not None:
                    return True
        return False
