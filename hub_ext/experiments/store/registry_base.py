"""Artifact registry, the storage-independent half: entities, reference parsing, the ABC.

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
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..retention import RetentionRule, plan
from .abstract import decode_token, encode_token, now_ms
from .entities import Page
from .errors import TrackingError, invalid

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
