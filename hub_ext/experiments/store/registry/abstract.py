"""The artifact registry interface: a small abstract core and conveniences on top.

Back ends implement the abstract methods (one transaction each, entities out, coded
:class:`~hub_ext.experiments.store.errors.TrackingError` on refusal). Access policy is the
service's business, as for the tracking store.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ...retention import RetentionRule, plan
from ..abstract import decode_token, encode_token, now_ms
from ..entities import Page
from ..errors import TrackingError
from .entities import (
    ArtifactName,
    ArtifactUse,
    ArtifactVersion,
    Lineage,
    RetentionReport,
    _page_size,
    check_artifact_name,
    parse_ref,
)


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
