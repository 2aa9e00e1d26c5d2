"""The artifact registry: entities (:mod:`.entities`), ABC (:mod:`.abstract`), SQL (:mod:`.sql`).

Named, numbered versions of run artifacts, aliases and lineage, kept on the tracking
database (see :mod:`.entities` for the model). This package's names stay importable from
``hub_ext.experiments.store.registry`` (and the ABC from ``...store.registry_base``), where
they lived before the split.
"""

from .abstract import AbstractArtifactRegistry
from .entities import (
    _ALIAS_RE,
    _NAME_RE,
    _SHA_RE,
    _VERSION_RE,
    LATEST,
    MAX_ALIAS,
    MAX_ATTEMPTS,
    MAX_DESCRIPTION,
    MAX_METADATA_BYTES,
    MAX_NAME,
    MAX_PAGE,
    MAX_VERSION,
    RESERVED_ALIASES,
    ArtifactName,
    ArtifactUse,
    ArtifactVersion,
    Lineage,
    RetentionReport,
    _metadata_text,
    _page_size,
    check_alias,
    check_artifact_name,
    parse_ref,
    parse_selector,
)
from .sql import SqlArtifactRegistry

__all__ = [
    "LATEST",
    "MAX_ALIAS",
    "MAX_ATTEMPTS",
    "MAX_DESCRIPTION",
    "MAX_METADATA_BYTES",
    "MAX_NAME",
    "MAX_PAGE",
    "MAX_VERSION",
    "RESERVED_ALIASES",
    "AbstractArtifactRegistry",
    "ArtifactName",
    "ArtifactUse",
    "ArtifactVersion",
    "Lineage",
    "RetentionReport",
    "SqlArtifactRegistry",
    "check_alias",
    "check_artifact_name",
    "parse_ref",
    "parse_selector",
    # private helpers some callers reached for before the split
    "_ALIAS_RE",
    "_NAME_RE",
    "_SHA_RE",
    "_VERSION_RE",
    "_metadata_text",
    "_page_size",
]
