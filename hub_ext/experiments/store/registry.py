"""Artifact registry: named, numbered versions of run artifacts, aliases and lineage.

A *version* (``flow-phi4-L8:v3``) is an immutable pointer, within a project, to one blob
(sha256) that a run produced (``run_id`` + the run artifact ``path`` it came from). Numbers
are assigned by the store, 1, 2, 3 ... per name, atomically under concurrency. An *alias*
(``best``, ``prod``) names one version of a name and moves atomically; ``latest`` is implicit
(the highest version) and cannot be set. A *use* records that a run consumed a version.

References: ``name:v3``, ``name:3``, ``name:best``, ``name:latest`` or ``name`` (latest).

Lives beside the tracking store on the same database (tables ``lh_artifact_versions``,
``lh_artifact_aliases``, ``lh_artifact_uses``; schema version 3), like the jobs store.
Access policy is the service's business, as for the tracking store.
"""

from __future__ import annotations

import abc
import json
import random
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..retention import RetentionRule, plan
from . import schema as t
from .abstract import decode_token, encode_token, now_ms
from .entities import Page
from .errors import CONFLICT, TrackingError, invalid, not_found
from .sqlquery import chunks
from .validation import check_run_id

MAX_NAME = 250
MAX_ALIAS = 128
MAX_DESCRIPTION = 10_000
MAX_METADATA_BYTES = 64 * 1024
MAX_PAGE = 1000
#: how often a version number is tried again when a concurrent creation took it
MAX_ATTEMPTS = 50

_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,250}")
_ALIAS_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,127}")
_VERSION_RE = re.compile(r"v?([0-9]+)")
MAX_VERSION = 2**31 - 1
_SHA_RE = re.compile(r"[0-9a-f]{64}")
LATEST = "latest"
#: alias names that cannot be set: ``latest`` is implicit, ``aliases`` is a URL segment
RESERVED_ALIASES = frozenset({LATEST, "aliases"})


# -- entities ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ArtifactVersion:
    """One immutable, numbered version of a named artifact in a project."""

    id: int
    project_id: int
    name: str
    version: int
    run_id: str
    path: str
    sha256: str
    size: int
    created: int
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """The canonical reference, ``name:v3``."""
        return f"{self.name}:v{self.version}"

    def to_json(self) -> dict[str, Any]:
        """The API representation."""
        return {
            "id": self.id,
            "project_id": self.project_id,
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "run_id": self.run_id,
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "created": self.created,
            "aliases": list(self.aliases),
            "description": self.description,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class ArtifactName:
    """A name of a project with its latest version, how many versions, and its aliases."""

    project_id: int
    name: str
    latest: ArtifactVersion
    versions: int
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactUse:
    """Run ``run_id`` (in project ``project_id``) consumed ``version`` at ``time`` (ms)."""

    run_id: str
    project_id: int
    version: ArtifactVersion
    time: int


@dataclass(frozen=True)
class Lineage:
    """Where a version came from and where it went."""

    version: ArtifactVersion
    produced_by: str
    consumed_by: tuple[ArtifactUse, ...] = ()


@dataclass(frozen=True)
class RetentionReport:
    """What :meth:`AbstractArtifactRegistry.apply_retention` did (or would do)."""

    planned: list[ArtifactVersion] = field(default_factory=list)
    deleted: list[ArtifactVersion] = field(default_factory=list)
    #: versions the plan chose but that were aliased or used meanwhile, with the reason
    skipped: list[tuple[ArtifactVersion, str]] = field(default_factory=list)


# -- pure checks ------------------------------------------------------------------------
def check_artifact_name(name: object) -> str:
    """An artifact name: 1..250 of ``A-Z a-z 0-9 . _ -``, not ``.`` or ``..``.

    Raises:
        TrackingError: INVALID_PARAMETER_VALUE naming the rule.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in (".", ".."):
        shown = name[:60] if isinstance(name, str) else name
        raise invalid(
            f"invalid artifact name {shown!r}: use 1..{MAX_NAME} letters, digits, '.', '_' or "
            "'-' (e.g. flow-phi4-L8)"
        )
    return name


def check_alias(alias: object) -> str:
    """An alias that may be set: a letter, then up to 127 of ``A-Z a-z 0-9 . _ -``.

    Not ``latest`` (implicit), not a version (``v3``) and not ``aliases``.
    """
    if not isinstance(alias, str) or not _ALIAS_RE.fullmatch(alias) or _VERSION_RE.fullmatch(alias):
        shown = alias[:60] if isinstance(alias, str) else alias
        raise invalid(
            f"invalid alias {shown!r}: start with a letter, then up to {MAX_ALIAS - 1} letters, "
            "digits, '.', '_' or '-', and do not look like a version (v3), e.g. best"
        )
    if alias in RESERVED_ALIASES:
        raise invalid(
            f"alias {alias!r} is reserved"
            + (": it always means the highest version" if alias == LATEST else "")
            + "; choose another name, e.g. best"
        )
    return alias


def parse_selector(selector: object) -> int | str:
    """``v3`` or ``3`` -> 3; ``latest`` or an alias -> the string."""
    if isinstance(selector, str):
        match = _VERSION_RE.fullmatch(selector)
        if match:
            number = int(match.group(1))
            if 1 <= number <= MAX_VERSION:
                return number
        elif selector == LATEST or _ALIAS_RE.fullmatch(selector):
            return selector
    raise invalid(
        f"invalid version reference {selector!r}: use v3 (or 3), latest, or an alias such as best"
    )


def parse_ref(ref: object) -> tuple[str, int | str]:
    """``name:v3`` / ``name:3`` / ``name:best`` / ``name:latest`` / ``name`` -> (name, sel)."""
    if not isinstance(ref, str) or not ref:
        raise invalid(f"invalid artifact reference {ref!r}: use name:v3, name:best or name:latest")
    name, sep, selector = ref.partition(":")
    check_artifact_name(name)
    return name, parse_selector(selector) if sep else LATEST


def _metadata_text(metadata: object) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise invalid('metadata must be a JSON object, e.g. {"L": 8, "ess": 0.71}')
    try:
        text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise invalid(f"metadata must be plain JSON (finite numbers): {e}") from None
    if len(text) > MAX_METADATA_BYTES:
        raise invalid(f"metadata is {len(text)} bytes as JSON; the limit is {MAX_METADATA_BYTES}")
    return text


def _page_size(max_results: object) -> int:
    if isinstance(max_results, bool) or not isinstance(max_results, int):
        raise invalid(f"max_results={max_results!r} must be an integer")
    if not 1 <= max_results <= MAX_PAGE:
        raise invalid(f"max_results={max_results} must be between 1 and {MAX_PAGE}")
    return max_results


# -- interface --------------------------------------------------------------------------
class AbstractArtifactRegistry(abc.ABC):
    """Storage of artifact versions, aliases and uses; also knows every blob reference."""

    @abc.abstractmethod
    def create_version(
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
        """Add the next version of ``name`` (number assigned atomically), with ``aliases``.

        The producing run must belong to the project. Whoever calls this to reference a
        blob holds :meth:`BlobStore.referencing <hub_ext.experiments.blobs.BlobStore.referencing>`
        and has checked that the blob is stored.
        """

    @abc.abstractmethod
    def _get_version(self, project_id: int, name: str, selector: int | str) -> ArtifactVersion:
        """A version by number, alias or ``latest``; RESOURCE_DOES_NOT_EXIST if none."""

    @abc.abstractmethod
    def get_version_by_id(self, version_id: int) -> ArtifactVersion:
        """A version by its row id."""

    @abc.abstractmethod
    def _list_versions(
        self, project_id: int, name: str | None, offset: int, limit: int
    ) -> tuple[list[ArtifactVersion], int | None]:
        """Versions (of one name, or all), newest first, and the next offset."""

    @abc.abstractmethod
    def _list_names(
        self, project_id: int, offset: int, limit: int
    ) -> tuple[list[ArtifactName], int | None]:
        """Names of a project in order, and the next offset."""

    @abc.abstractmethod
    def version_groups(
        self, project_id: int | None = None, name: str | None = None
    ) -> Iterator[list[ArtifactVersion]]:
        """Every version, one list per (project, name) (for retention)."""

    @abc.abstractmethod
    def set_alias(self, project_id: int, name: str, alias: str, version: int) -> ArtifactVersion:
        """Point ``alias`` at ``version`` of ``name`` (creating or moving it atomically)."""

    @abc.abstractmethod
    def delete_alias(self, project_id: int, name: str, alias: str) -> None:
        """Remove an alias; RESOURCE_DOES_NOT_EXIST if it is not set."""

    @abc.abstractmethod
    def delete_version(self, project_id: int, name: str, version: int) -> ArtifactVersion:
        """Delete a version and its use records.

        CONFLICT while an alias points at it, and for the highest version (``latest``): so
        the highest number never goes down and ``name:v3`` never means other content.
        """

    @abc.abstractmethod
    def record_use(self, run_id: str, version_id: int) -> ArtifactUse:
        """Record that a run consumed a version (idempotent: the first time is kept)."""

    @abc.abstractmethod
    def lineage(self, version: ArtifactVersion) -> Lineage:
        """The producing run and the consuming runs (oldest use first)."""

    @abc.abstractmethod
    def uses_of_run(self, run_id: str) -> list[ArtifactUse]:
        """The versions a run consumed, oldest use first."""

    @abc.abstractmethod
    def referenced_among(self, shas: Iterable[str]) -> set[str]:
        """Those of ``shas`` that a run artifact or an artifact version references."""

    @abc.abstractmethod
    def referenced_blobs(self) -> set[str]:
        """Every sha256 referenced by a run artifact or an artifact version."""

    @abc.abstractmethod
    def has_references(self) -> bool:
        """Whether any run artifact or artifact version exists (a sanity check for GC)."""

    # -- conveniences ---------------------------------------------------------------------
    def get_version(self, project_id: int, ref: str) -> ArtifactVersion:
        """A version by reference: ``name:v3``, ``name:3``, ``name:best``, ``name:latest``."""
        name, selector = parse_ref(ref)
        return self._get_version(project_id, name, selector)

    def list_versions(
        self,
        project_id: int,
        name: str | None = None,
        *,
        page_token: str | None = None,
        max_results: int = 100,
    ) -> Page:
        """A page of versions, newest first."""
        if name is not None:
            check_artifact_name(name)
        limit = _page_size(max_results)
        items, nxt = self._list_versions(project_id, name, decode_token(page_token), limit)
        return Page(items, encode_token(nxt) if nxt is not None else None)

    def list_names(
        self, project_id: int, *, page_token: str | None = None, max_results: int = 100
    ) -> Page:
        """A page of :class:`ArtifactName`, by name."""
        limit = _page_size(max_results)
        items, nxt = self._list_names(project_id, decode_token(page_token), limit)
        return Page(items, encode_token(nxt) if nxt is not None else None)

    def is_referenced(self, sha256: str) -> bool:
        """Whether any row references the blob."""
        return bool(self.referenced_among([sha256]))

    def apply_retention(
        self,
        rule: RetentionRule,
        *,
        project_id: int | None = None,
        name: str | None = None,
        now: int | None = None,
        dry_run: bool = False,
    ) -> RetentionReport:
        """Delete the versions ``rule`` does not keep (see :mod:`hub_ext.experiments.retention`).

        A version aliased or used by a new alias meanwhile is skipped, not deleted. Blobs are
        freed later, by garbage collection.
        """
        stamp = now_ms() if now is None else now
        report = RetentionReport()
        for group in self.version_groups(project_id, name):
            for v in plan(group, rule, stamp):
                report.planned.append(v)
                if dry_run:
                    continue
                try:
                    report.deleted.append(self.delete_version(v.project_id, v.name, v.version))
                except TrackingError as e:
                    report.skipped.append((v, e.message))
        return report


# -- SQL --------------------------------------------------------------------------------
_V = t.artifact_versions
_A = t.artifact_aliases
_U = t.artifact_uses


class SqlArtifactRegistry(AbstractArtifactRegistry):
    """The registry on the tracking database's engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @classmethod
    def for_store(cls, store: Any) -> SqlArtifactRegistry:
        """The registry sharing a :class:`~hub_ext.experiments.store.SqlStore`'s engine."""
        engine = getattr(store, "engine", None)
        if engine is None:
            raise TypeError(
                f"{type(store).__name__} has no SQL engine: pass make_app(registry=...) "
                "explicitly for a store that is not SQL"
            )
        return cls(engine)

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
