"""Artifact registry entities and reference parsing (pure: no storage, no I/O).

A *version* (``flow-phi4-L8:v3``) is an immutable pointer, within a project, to one blob
(sha256) that a run produced (``run_id`` + the run artifact ``path`` it came from). Numbers
are assigned by the store, 1, 2, 3 ... per name, atomically under concurrency. An *alias*
(``best``, ``prod``) names one version of a name and moves atomically; ``latest`` is implicit
(the highest version) and cannot be set. A *use* records that a run consumed a version.

References: ``name:v3``, ``name:3``, ``name:best``, ``name:latest`` or ``name`` (latest).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import invalid

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
