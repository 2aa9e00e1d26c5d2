"""Artifacts: upload (streamed, hashed, atomic), download and list; native and MLflow paths.

Native: ``/api/v1/runs/{id}/artifacts`` (list) and ``/api/v1/runs/{id}/artifacts/{path}``
(PUT upload, GET download). MLflow's proxied artifact access:
``/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/{path}`` and the listing with
``?path=``, so that the unmodified client's ``log_artifact`` works.

Uploads are the only request bodies larger than the service's JSON limit
(:mod:`hub_ext.bodylimits`). Not a byte of one is read before the caller is authenticated,
may write the run and has declared a size within the artifact limit (or sends it chunked);
then it streams to a temporary file, never into memory. A refused upload is answered at once;
the rest of its body is then read and dropped for a while (see :mod:`hub_ext.bodylimits` for
why), never kept.
"""

from __future__ import annotations

import json
from typing import Any

from tornado import web

from ...bodylimits import (
    DEFAULT_DRAIN,
    DEFAULT_DRAIN_TIMEOUT,
    DrainAfterAnswer,
    allow_draining,
    declared_length,
    waits_for_continue,
)
from ..blobs import BlobStore, BlobWriter, clean_artifact_path
from ..serialize import artifact as artifact_json
from ..storage import Bucket, StorageCaps, bucket_of, check_upload
from ..store.entities import Run
from ..store.errors import (
    RESOURCE_LIMIT_EXCEEDED,
    STORAGE_QUOTA_EXCEEDED,
    TrackingError,
    invalid,
    not_found,
)
from .base import BaseHandler
from .schemas import BINARY, PathItems, Query, obj, operation, ref

CHUNK = 1024 * 1024


class ArtifactBase(BaseHandler):
    """Run lookup with the read/write rules, and the blob store."""

    @property
    def blobs(self) -> BlobStore:
        """The blob store, injected through settings."""
        return self.settings["blobs"]

    async def send_blob(self, sha256: str, name: str) -> None:
        """Stream a blob to the client."""
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.set_header("X-Content-SHA256", sha256)
        with self.blobs.open(sha256) as f:
            while chunk := f.read(CHUNK):
                self.write(chunk)
                await self.flush()
        self.finish()


@web.stream_request_body
class UploadBase(ArtifactBase):
    """Receives a ``PUT`` body in chunks straight into a :class:`BlobWriter`.

    The application's body gate leaves the bodies of ``streamed_methods`` to this class (the
    server-wide limit is the small JSON one); other methods' bodies are limited as usual.
    """

    #: methods whose bodies this handler streams and limits itself (hub_ext.bodylimits)
    streamed_methods = ("PUT",)
    _writer: BlobWriter | None = None
    _refusal: DrainAfterAnswer | None = None
    _run: Run | None = None
    _path: str = ""
    #: the group (or private projects) the upload is counted in, when it has a cap
    _bucket: Bucket | None = None
    _cap: int | None = None
    #: bytes the upload may add before it passes the cap (checked as chunks arrive)
    _room: int | None = None

    def target(self) -> tuple[str, str]:
        """``(run_id, path)`` of the upload, from the URL."""
        raise NotImplementedError

    async def prepare(self) -> None:
        """Authenticate, authorise and size an upload before any byte of its body is read.

        Tornado runs this before it reads the body. The caller must be signed in (401), see
        the run (404) and may write it (403); a declared size over the artifact limit gets
        413, and so does one that would take the group's artifact storage past its cap
        (``artifact_quota``). Only then is the request's body limit raised from the JSON
        limit to the upload's size (a chunked upload is counted by :meth:`data_received`).
        """
        checked = super().prepare()
        if checked is not None:
            await checked
        if self._finished or self.request.method not in self.streamed_methods:
            return
        declared = declared_length(self.request.headers)
        try:
            self.viewer  # noqa: B018 - 401 before anything about the run is looked up
            run_id, path = self.target()
            self._path = clean_artifact_path(path)
            self._run = self.writable_run(run_id)
            if declared is not None and declared > self.blobs.max_size:
                raise self.blobs.too_large(declared)
            self._size_against_cap(self._run, declared)
        except TrackingError as e:
            self._refuse(e, declared, before_body=True)
            return
        allow_draining(self.request.connection, declared)  # the body is counted here
        self._writer = self.blobs.writer()

    def _size_against_cap(self, run: Run, declared: int | None) -> None:
        """Note the run's bucket and its room under the cap; 413 if ``declared`` won't fit."""
        caps: StorageCaps | None = self.settings.get("storage_caps")
        if caps is None or not caps.enabled:
            return
        bucket = bucket_of(self.store.get_project(run.project_id))
        cap = caps.cap_of(bucket)
        if cap is None:
            return
        self._bucket, self._cap = bucket, cap
        expected = self.expected_sha256()
        if expected and self.store.bucket_holds(bucket.group, bucket.owner, expected.lower()):
            return  # content the group holds adds nothing (the commit checks the digest)
        used = self.store.bucket_bytes(bucket.group, bucket.owner)
        check_upload(bucket, cap, used, declared or 0)
        self._room = cap - used

    def expected_sha256(self) -> str | None:
        """The sha256 the client says the body has (header ``X-Content-SHA256`` or query)."""
        return self.request.headers.get("X-Content-SHA256") or self.get_argument("sha256", None)

    def _refuse(self, error: TrackingError, declared: int | None, *, before_body: bool) -> None:
        """Answer ``error`` now, as JSON; then read and drop the rest of the body for a while.

        Nothing of the body is kept; the exchange ends when the body is complete (in
        :meth:`put`), or after ``refused_body_drain`` bytes or ``refused_body_drain_timeout``
        seconds, when the connection is closed.
        """
        too_large = (RESOURCE_LIMIT_EXCEEDED, STORAGE_QUOTA_EXCEEDED)
        status = 413 if error.code in too_large else error.http_status
        drain = self.settings.get("refused_body_drain", DEFAULT_DRAIN)
        if before_body and waits_for_continue(self.request.headers):
            drain = 0  # refused before "100 Continue": no body comes, none is waited for
        payload = json.dumps({"error_code": error.code, "message": error.message, "status": status})
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Content-Length", str(len(payload)))
        self.set_header("Connection", "close")  # why: see hub_ext.bodylimits
        self.write(payload)
        self.flush()
        allow_draining(self.request.connection, declared)
        self._refusal = DrainAfterAnswer(
            self.finish,
            drain=drain,
            timeout=self.settings.get("refused_body_drain_timeout", DEFAULT_DRAIN_TIMEOUT),
        )

    def data_received(self, chunk: bytes) -> None:
        """Hash and write a chunk; 413 past the size limit (the rest is dropped)."""
        if self._refusal is not None:
            self._refusal.received(len(chunk))
            return
        if self._writer is None:
            return
        try:
            self._writer.write(chunk)
            if self._room is not None and self._writer.size > self._room:
                assert self._bucket is not None and self._cap is not None
                check_upload(self._bucket, self._cap, self._cap - self._room, self._writer.size)
        except TrackingError as e:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.abort()
            self._refuse(e, None, before_body=False)

    def on_connection_close(self) -> None:
        """Drop a partial upload (and let tornado stop waiting for the body)."""
        if self._refusal is not None:
            self._refusal.cancel()
        if self._writer is not None:
            self._writer.abort()
        super().on_connection_close()

    def upload_refused(self) -> bool:
        """Whether the upload was refused (and answered); the complete body is dropped."""
        if self._refusal is None:
            return False
        self._refusal.cancel()  # the body is complete: the handler finishes as usual
        return True

    def store_upload(self) -> Any:
        """Commit the blob (verifying ``X-Content-SHA256`` if sent) and record it.

        Both happen under the blob store's shared GC lock, so that garbage collection cannot
        delete the blob (new, or found already stored) before the row that references it is
        committed.
        """
        writer, run = self._writer, self._run
        if writer is None or run is None:
            raise invalid("no upload in progress")
        expected = self.expected_sha256()
        size = writer.size
        self._writer = None
        try:
            self._recheck_cap(writer)
        except TrackingError:
            writer.abort()
            raise
        with self.blobs.referencing():
            digest = writer.commit(expected)
            return self.store.add_artifact(run.id, self._path, digest, size)

    def _recheck_cap(self, writer: BlobWriter) -> None:
        """The exact check, just before the upload is recorded.

        Between this count and the record nothing else runs on the service's event loop,
        so concurrent uploads to one group cannot pass its cap together. A blob the group
        already holds adds nothing.
        """
        bucket = self._bucket
        if bucket is None:
            return
        if self.store.bucket_holds(bucket.group, bucket.owner, writer.sha256):
            return
        used = self.store.bucket_bytes(bucket.group, bucket.owner)
        check_upload(bucket, self._cap, used, writer.size)


class RunArtifactHandler(UploadBase):
    """``/api/v1/runs/{id}/artifacts/{path}``."""

    def target(self) -> tuple[str, str]:  # noqa: D102
        return self.path_args[0], self.path_args[1]

    def put(self, run_id: str, path: str) -> None:
        """Upload (replaces the path's previous version; the blob is kept once)."""
        if self.upload_refused():
            return
        record = self.store_upload()
        self.write_json(artifact_json(record), 201)

    async def get(self, run_id: str, path: str) -> None:
        """Download."""
        self.find_run(run_id)
        record = self.store.get_artifact(run_id, clean_artifact_path(path))
        await self.send_blob(record.sha256, record.path.rsplit("/", 1)[-1])

    def delete(self, run_id: str, path: str) -> None:
        """Delete a file, or every file under a directory (the run's writers only).

        The space counts against the group's artifact storage until nothing else (another
        run's artifact, a registered version) points to the same blob.
        """
        self.writable_run(run_id, data=False)
        removed = self.store.delete_artifacts(run_id, clean_artifact_path(path))
        self.write_json({"deleted": [artifact_json(a) for a in removed]})


class RunArtifactListHandler(ArtifactBase):
    """``/api/v1/runs/{id}/artifacts``."""

    def get(self, run_id: str) -> None:
        """Files of the run under ``prefix``."""
        self.find_run(run_id)
        prefix = self.get_argument("prefix", "")
        items = self.store.list_artifacts(run_id, prefix)
        self.write_json({"items": [artifact_json(a) for a in items]})


def _split_mlflow_path(path: str) -> tuple[str, str, str]:
    """``<exp>/<run>/artifacts/<rel>`` -> (exp, run, rel).

    ``.`` parts of ``rel`` are dropped: the mlflow client asks for ``artifacts/.`` and
    ``artifacts/./model.pt`` when it downloads the whole run (``download_artifacts(run,
    ".")``). ``..`` stays, and :func:`clean_artifact_path` refuses it.
    """
    parts = path.split("/", 3)
    if len(parts) < 3 or parts[2] != "artifacts":
        raise invalid(
            f"artifact path {path!r} must look like '<experiment_id>/<run_id>/artifacts/<path>'"
        )
    rel = parts[3] if len(parts) > 3 else ""
    kept = [part for part in rel.split("/") if part != "."]
    return parts[0], parts[1], "/".join(kept) if any(kept) else ""


class MlflowArtifactHandler(UploadBase):
    """``/api/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/{path}``."""

    def target(self) -> tuple[str, str]:  # noqa: D102
        exp, run_id, rel = _split_mlflow_path(self.path_args[0])
        run = self.store.get_run(run_id)
        if str(run.project_id) != exp:
            raise not_found(f"Run {run_id} in experiment {exp}")
        return run_id, rel

    def put(self, path: str) -> None:
        """Upload, as MLflow's artifact proxy does."""
        if self.upload_refused():
            return
        self.store_upload()
        self.write_json({})

    async def get(self, path: str) -> None:
        """Download."""
        _, run_id, rel = _split_mlflow_path(path)
        self.find_run(run_id)
        record = self.store.get_artifact(run_id, clean_artifact_path(rel))
        await self.send_blob(record.sha256, record.path.rsplit("/", 1)[-1])

    def delete(self, path: str) -> None:
        """Delete a file or a directory's files, as MLflow's artifact proxy does."""
        self.viewer  # noqa: B018 - 401 before anything about the run is looked up
        run_id, rel = self.target()
        self.writable_run(run_id, data=False)
        self.store.delete_artifacts(run_id, clean_artifact_path(rel))
        self.write_json({})


class MlflowArtifactListHandler(ArtifactBase):
    """``/api/2.0/mlflow-artifacts/artifacts?path=<exp>/<run>/artifacts/<dir>``."""

    def get(self) -> None:
        """Direct children (files and directories) of a directory, as MLflow lists them."""
        path = self.get_argument("path", "").strip("/")
        _, run_id, rel = _split_mlflow_path(path + ("/" if path.count("/") == 2 else ""))
        self.find_run(run_id)
        prefix = f"{rel.rstrip('/')}/" if rel else ""
        files: dict[str, dict] = {}
        for record in self.store.list_artifacts(run_id, prefix):
            rest = record.path[len(prefix) :]
            head, _, tail = rest.partition("/")
            if tail:
                files.setdefault(head, {"path": head, "is_dir": True})
            else:
                files[head] = {"path": head, "is_dir": False, "file_size": record.size}
        self.write_json({"files": sorted(files.values(), key=lambda f: f["path"])})


default_handlers = [
    (r"/api/v1/runs/([0-9a-zA-Z]+)/artifacts", RunArtifactListHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)/artifacts/(.+)", RunArtifactHandler),
    (r"/api/2.0/mlflow-artifacts/artifacts", MlflowArtifactListHandler),
    (r"/api/2.0/mlflow-artifacts/artifacts/(.+)", MlflowArtifactHandler),
]

#: OpenAPI path items of this module's native routes (MLflow's are not described), assembled
#: by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/runs/{run_id}/artifacts": {
        "get": operation(
            "Artifacts of a run",
            query=(Query("prefix", "string", "path prefix"),),
            returns=ref("ArtifactList"),
        )
    },
    "/api/v1/runs/{run_id}/artifacts/{path}": {
        "get": operation(
            "Download an artifact (header X-Content-SHA256: its hash)",
            returns=BINARY,
            media="application/octet-stream",
        ),
        "delete": operation(
            "Delete a file, or every file under a directory (the run's writers); frees its "
            "group's storage once nothing else points to the same content",
            returns=obj({"deleted": {"type": "array", "items": ref("Artifact")}}, ("deleted",)),
        ),
        "put": operation(
            "Upload (replaces the path's previous version); header X-Content-SHA256 or "
            "query sha256 to verify",
            ok=201,
            returns=ref("Artifact"),
            query=(Query("sha256", "string", "expected sha256 of the body"),),
            body=BINARY,
            body_media="application/octet-stream",
            body_required=True,
            description="413 also when the upload would take the project's group (or the "
            "owner's private projects) past its artifact storage cap "
            "(error_code STORAGE_QUOTA_EXCEEDED).",
        ),
    },
}
