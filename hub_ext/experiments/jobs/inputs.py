"""Job inputs: config keys that name data take references the service resolves, never paths.

A training config may name a file to read (``forward_kl_data``: exact samples for forward KL).
On a shared service such a name must never be a path on the service's host: the job would
read whatever the service account can read. So the value is a reference, resolved here with
the submitter's access rights, and the referenced blob is copied into the job's own directory:

- ``run:<run id>/<artifact path>``: an artifact of a run the submitter can read;
- ``<artifact name>:v3``, ``<artifact name>:<alias>``, ``<artifact name>:latest``: a
  registered version in the job's project.

The job's config file then names the copy inside the job's directory.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..access import can_read_project
from ..blobs import BlobStore, clean_artifact_path
from ..store.abstract import AbstractStore
from ..store.entities import Project, Viewer
from ..store.errors import TrackingError, invalid, not_found
from ..store.registry import AbstractArtifactRegistry, parse_ref

#: Config keys whose values name data (each resolved and copied into ``inputs/<key>``).
DATA_KEYS = ("forward_kl_data",)
#: The reference forms, as error messages name them.
REFERENCE_FORMS = (
    "run:<run id>/<artifact path> (an artifact of a run you can read) or <artifact name>:v3 / "
    "<artifact name>:<alias> (a registered version in the job's project)"
)
#: Directory in the job's directory that holds the copied inputs.
INPUTS_DIR = "inputs"

_RUN_REF_RE = re.compile(r"run:([0-9a-zA-Z]{1,64})/(.+)", re.DOTALL)


@dataclass(frozen=True)
class ResolvedInput:
    """One data reference of a config, resolved to a blob."""

    key: str
    reference: str
    sha256: str
    size: int
    version_id: int | None = None

    @property
    def file_name(self) -> str:
        """The copy's name inside the job's ``inputs/`` directory."""
        return f"{self.key}.pt"


def looks_like_path(value: str) -> bool:
    """Whether a value reads as a file path rather than a reference (for the error message)."""
    return value.startswith(("/", "~", ".", "file:")) or "\\" in value or ":" not in value


def _refuse_path(key: str, value: str) -> TrackingError:
    what = "names a file on the service's host" if looks_like_path(value) else "is not a reference"
    return invalid(
        f"config {key}={value!r} {what}: data is named by a reference the service resolves, "
        f"{REFERENCE_FORMS}"
    )


def resolve_inputs(
    config: Mapping[str, Any],
    *,
    viewer: Viewer,
    project: Project | None,
    store: AbstractStore,
    registry: AbstractArtifactRegistry | None,
    blobs: BlobStore | None,
) -> list[ResolvedInput]:
    """Resolve every data key of ``config`` with the viewer's access rights.

    Args:
        config: the job's config.
        viewer: the submitter.
        project: the job's project (None while it does not exist yet).
        store: the tracking store.
        registry: the artifact registry (``name:v3`` references).
        blobs: the blob store.

    Raises:
        TrackingError: 400 naming the reference form for a path or malformed reference, 404
            for a run or version the viewer cannot see (existence not shown).
    """
    resolved = []
    for key in DATA_KEYS:
        value = config.get(key)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or len(value) > 2048:
            raise invalid(f"config {key} must be a reference string: {REFERENCE_FORMS}")
        if registry is None or blobs is None:
            raise invalid(f"config {key}: this service has no artifact store to resolve it from")
        run_ref = _RUN_REF_RE.fullmatch(value)
        if run_ref:
            resolved.append(_resolve_run_artifact(key, value, run_ref, viewer, store))
        elif not looks_like_path(value):
            try:
                parse_ref(value)  # the registry's own grammar of name:v3 / name:<alias>
            except TrackingError:
                raise _refuse_path(key, value) from None
            if project is None:  # a new project has no registered versions yet
                raise not_found(f"artifact version {value!r} (config {key}): the project is new")
            try:
                version = registry.get_version(project.id, value)
            except TrackingError as e:
                if e.http_status == 404:
                    raise not_found(
                        f"artifact version {value!r} in project {project.name!r} (config {key})"
                    ) from None
                raise
            resolved.append(
                ResolvedInput(key, value, version.sha256, version.size, version_id=version.id)
            )
        else:
            raise _refuse_path(key, value)
    for item in resolved:
        if not blobs.exists(item.sha256):  # type: ignore[union-attr]
            raise invalid(
                f"config {item.key}={item.reference!r}: the artifact's content is missing from "
                "the artifact store; upload it again"
            )
    return resolved


def _resolve_run_artifact(
    key: str, value: str, match: re.Match, viewer: Viewer, store: AbstractStore
) -> ResolvedInput:
    run_id, path = match.group(1), match.group(2)
    try:
        path = clean_artifact_path(path)
    except TrackingError:
        raise _refuse_path(key, value) from None
    missing = not_found(f"artifact {path!r} of run {run_id} (config {key})")
    try:
        run = store.get_run(run_id, data=False)
        project = store.get_project(run.project_id)
    except TrackingError:
        raise missing from None
    if not can_read_project(viewer, project):
        raise missing
    try:
        artifact = store.get_artifact(run.id, path)
    except TrackingError:
        raise missing from None
    return ResolvedInput(key, value, artifact.sha256, artifact.size)


def copy_inputs(
    inputs: list[ResolvedInput], blobs: BlobStore, workdir: Path, seen_as: str
) -> dict[str, str]:
    """Copy each resolved blob into ``workdir/inputs``; return key -> path as the job sees it.

    Args:
        inputs: what :func:`resolve_inputs` returned.
        blobs: the artifact blob store.
        workdir: the job's directory on this host.
        seen_as: the job's directory as the job sees it (``/job`` in a container).
    """
    if not inputs:
        return {}
    target = workdir / INPUTS_DIR
    target.mkdir(mode=0o700, exist_ok=True)
    paths = {}
    with blobs.referencing():  # not collected while copied
        for item in inputs:
            with blobs.open(item.sha256) as src, open(target / item.file_name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            paths[item.key] = f"{seen_as.rstrip('/')}/{INPUTS_DIR}/{item.file_name}"
    return paths


__all__ = ["DATA_KEYS", "REFERENCE_FORMS", "ResolvedInput", "copy_inputs", "resolve_inputs"]
