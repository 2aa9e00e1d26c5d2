"""Content-addressed artifact storage on a directory (a shared filesystem in production).

A blob is stored once under ``<root>/<sha[:2]>/<sha[2:4]>/<sha>``: written to a temporary
file in ``<root>/tmp``, hashed while written, fsynced, then renamed into place, so that a
reader never sees a partial blob and identical files are kept once.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO

from .store.errors import RESOURCE_LIMIT_EXCEEDED, TrackingError, invalid

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_PATH_LENGTH = 1024


def clean_artifact_path(path: str) -> str:
    """A run-relative artifact path, refused if it could leave the run's tree.

    >>> clean_artifact_path("model/flow.pt")
    'model/flow.pt'

    Raises:
        TrackingError: INVALID_PARAMETER_VALUE for absolute paths, ``..``, empty parts,
            backslashes or control characters.
    """
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise invalid(f"artifact path must be 1..{MAX_PATH_LENGTH} characters")
    if path.startswith("/") or "\\" in path or any(ord(ch) < 32 for ch in path):
        raise invalid(f"artifact path {path!r} must be relative, with '/' separators")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise invalid(f"artifact path {path!r} may not contain empty, '.' or '..' parts")
    return path


class BlobStore:
    """Blobs by sha256 under ``root``, each at most ``max_size`` bytes."""

    def __init__(self, root: str | Path, max_size: int = 10 * 1024**3):
        self.root = Path(root)
        self.max_size = max_size
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives."""
        if not _SHA_RE.match(sha256):
            raise invalid(f"{sha256!r} is not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self.path(sha256).is_file()

    def writer(self) -> BlobWriter:
        """A writer for one new blob."""
        return BlobWriter(self)

    def open(self, sha256: str) -> BinaryIO:
        """The blob for reading."""
        return open(self.path(sha256), "rb")  # noqa: SIM115 - the caller closes it

    def remove(self, sha256: str) -> None:
        """Delete a blob (garbage collection decides which)."""
        self.path(sha256).unlink(missing_ok=True)


class BlobWriter:
    """Receives a blob in chunks, hashing as it goes; :meth:`commit` puts it in place."""

    def __init__(self, store: BlobStore):
        self.store = store
        self.size = 0
        self._hash = hashlib.sha256()
        self._tmp = store.root / "tmp" / f"upload-{secrets.token_hex(8)}"
        self._file: BinaryIO | None = open(self._tmp, "wb")  # noqa: SIM115

    def write(self, chunk: bytes) -> None:
        """Add bytes; refuses once the blob exceeds the store's ``max_size``."""
        self.size += len(chunk)
        if self.size > self.store.max_size:
            self.abort()
            raise TrackingError(
                f"artifact exceeds the limit of {self.store.max_size} bytes",
                RESOURCE_LIMIT_EXCEEDED,
            )
        self._hash.update(chunk)
        assert self._file is not None
        self._file.write(chunk)

    def commit(self, expected_sha256: str | None = None) -> str:
        """Finish: verify ``expected_sha256`` if given, move into place, return the digest."""
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        digest = self._hash.hexdigest()
        if expected_sha256 is not None and expected_sha256.lower() != digest:
            self._tmp.unlink(missing_ok=True)
            raise invalid(
                f"upload is corrupt: its sha256 is {digest}, the client said {expected_sha256}"
            )
        final = self.store.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            self._tmp.unlink(missing_ok=True)  # same content already stored
        else:
            os.replace(self._tmp, final)
        return digest

    def abort(self) -> None:
        """Drop a partial upload."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)
