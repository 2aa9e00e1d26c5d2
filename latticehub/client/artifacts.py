"""Run artifacts (list, upload, download, delete) and the artifact registry (versions, aliases).

Uploads stream the file and send its sha256 (the service checks it); downloads stream to a
temporary file beside the target, check the ``X-Content-SHA256`` the service sends and only
then move it into place, so a target is never half written.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from .base import ClientBase, Page, decode, query, segment
from .errors import BAD_ANSWER, TrackingAPIError

#: Bytes read per chunk when hashing, uploading or downloading.
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactsAPI(ClientBase):
    """Run artifacts and the registry (mixed into :class:`~latticehub.client.TrackingClient`)."""

    # -- run artifacts -----------------------------------------------------------------------
    def list_artifacts(self, run_id: str, prefix: str = "") -> list[dict[str, Any]]:
        """The run's files under ``prefix``: ``[{"path", "size", "sha256", "created"}]``."""
        path = f"/runs/{segment(run_id)}/artifacts"
        return self.request("GET", path, params=query(prefix=prefix))["items"]

    def upload_artifact(self, run_id: str, name: str, path: Path | str) -> dict[str, Any]:
        """Upload a file as the run's artifact ``name`` (``PUT``; streamed, sha256-checked).

        Raises:
            TrackingAPIError: 413 when it is over the size limit or the group's storage cap.
        """
        path = Path(path)
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(os.path.getsize(path)),
            "X-Content-SHA256": sha256_of(path),
        }
        url_path = f"/runs/{segment(run_id)}/artifacts/{_artifact_path(name)}"
        with open(path, "rb") as f, self.open("PUT", url_path, body=f, headers=headers) as answer:
            return decode(answer.read(), answer.status, f"PUT {url_path}")

    def download_artifact(self, run_id: str, path: str, dest: Path | str) -> Path:
        """Download one artifact to the file ``dest`` (streamed, sha256-checked, atomic).

        Raises:
            TrackingAPIError: refused or missing, or (code ``BAD_ANSWER``) the content did not
                match its sha256.
        """
        return self._download(f"/runs/{segment(run_id)}/artifacts/{_artifact_path(path)}", dest)

    def download_artifacts(self, run_id: str, dest: Path | str, prefix: str = "") -> list[Path]:
        """Download the run's artifacts under ``prefix`` into the directory ``dest``.

        Files keep their artifact paths below ``dest``; a path that would leave ``dest`` is
        skipped (the service refuses such paths anyway).
        """
        root = Path(dest).resolve()
        written = []
        for item in self.list_artifacts(run_id, prefix):
            target = (root / item["path"]).resolve()
            if target.is_relative_to(root):
                written.append(self.download_artifact(run_id, item["path"], target))
        return written

    def delete_artifact(self, run_id: str, path: str) -> list[dict[str, Any]]:
        """Delete a file, or every file under a directory; returns what was deleted."""
        url_path = f"/runs/{segment(run_id)}/artifacts/{_artifact_path(path)}"
        return self.request("DELETE", url_path)["deleted"]

    # -- registry ------------------------------------------------------------------------------
    def list_registered(
        self, project_id: int, *, max_results: int | None = None, page_token: str | None = None
    ) -> Page:
        """Registered names of a project with latest version and aliases (one page)."""
        params = query(max_results=max_results, page_token=page_token)
        return self.page(f"/projects/{segment(project_id)}/artifacts", params)

    def register_artifact(
        self,
        project_id: int,
        name: str,
        run_id: str,
        path: str,
        *,
        description: str = "",
        metadata: dict[str, Any] | None = None,
        aliases: list[str] | None = None,
    ) -> dict[str, Any]:
        """Register a run's artifact ``path`` as the next version of ``name``.

        Returns:
            The version (``{"ref": "name:v3", "version", "sha256", "aliases" ...}``).
        """
        body: dict[str, Any] = {"name": name, "run_id": run_id, "path": path}
        body.update(query(description=description, metadata=metadata, aliases=aliases or None))
        return self.request("POST", f"/projects/{segment(project_id)}/artifacts", body)

    def list_versions(
        self,
        project_id: int,
        name: str,
        *,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> Page:
        """Versions of a registered name, newest first (one page; 404 for an unknown name)."""
        params = query(max_results=max_results, page_token=page_token)
        return self.page(f"/projects/{segment(project_id)}/artifacts/{segment(name)}", params)

    def get_version(self, project_id: int, name: str, ref: str | int = "latest") -> dict[str, Any]:
        """One version with its lineage; ``ref`` is ``3``, ``"v3"``, ``"latest"`` or an alias."""
        return self.request("GET", _version_path(project_id, name, ref))

    def delete_version(self, project_id: int, name: str, ref: str | int) -> None:
        """Delete a version (409 while an alias points at it)."""
        self.request("DELETE", _version_path(project_id, name, ref))

    def download_version(
        self, project_id: int, name: str, ref: str | int, dest: Path | str
    ) -> Path:
        """Download a version's content to the file ``dest`` (sha256-checked, atomic)."""
        return self._download(_version_path(project_id, name, ref) + "/file", dest)

    def set_alias(self, project_id: int, name: str, alias: str, version: int) -> dict[str, Any]:
        """Point ``alias`` at ``version`` of ``name`` (creates or moves it); the version."""
        path = f"/projects/{segment(project_id)}/artifacts/{segment(name)}/aliases/{segment(alias)}"
        return self.request("PUT", path, {"version": version})

    def delete_alias(self, project_id: int, name: str, alias: str) -> None:
        """Remove an alias."""
        path = f"/projects/{segment(project_id)}/artifacts/{segment(name)}/aliases/{segment(alias)}"
        self.request("DELETE", path)

    def run_uses(self, run_id: str) -> list[dict[str, Any]]:
        """The versions a run consumed, oldest first: ``[{"time", "version"}]``."""
        return self.request("GET", f"/runs/{segment(run_id)}/uses")["items"]

    def record_use(self, run_id: str, project_id: int, ref: str) -> dict[str, Any]:
        """Record that the run consumed ``ref`` (``"name:v3"``, ``"name:best"``); idempotent."""
        body = {"project": project_id, "ref": ref}
        return self.request("POST", f"/runs/{segment(run_id)}/uses", body)

    # -- streaming -----------------------------------------------------------------------------
    def _download(self, url_path: str, dest: Path | str) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, self.open("GET", url_path) as answer:
                expected = answer.headers.get("X-Content-SHA256")
                while chunk := answer.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                status = answer.status
            if expected and digest.hexdigest() != expected:
                raise TrackingAPIError(
                    status, BAD_ANSWER, f"the download of {url_path} was damaged (sha256 "
                    "mismatch): try again",
                )  # fmt: skip
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest


def _artifact_path(path: str) -> str:
    """An artifact path in a URL: each part quoted, the slashes kept."""
    return urllib.parse.quote(path.lstrip("/"))


def _version_path(project_id: int, name: str, ref: str | int) -> str:
    return f"/projects/{segment(project_id)}/artifacts/{segment(name)}/{segment(ref)}"
