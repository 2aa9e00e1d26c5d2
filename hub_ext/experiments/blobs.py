"""Content-addressed artifact storage on a directory (a shared filesystem in production).

A blob is stored once under ``<root>/<sha[:2]>/<sha[2:4]>/<sha>``: written to a temporary
file in ``<root>/tmp``, hashed while written, fsynced, then renamed into place, so that a
reader never sees a partial blob and identical files are kept once.

Garbage collection (:mod:`hub_ext.experiments.gc`) may delete a blob that no database row
references. So that it can never delete a blob that a row is about to reference, everything
that adds a reference does so inside :meth:`BlobStore.referencing` (a *shared* lock on
``<root>/.gc.lock``), from putting the blob in place (or finding it there) until the row is
committed; the collector deletes only under :meth:`BlobStore.exclusive`, after checking the
references again. A temporary file is pinned (``flock``) by its writer while it is written, so
that the collector's clean-up of stale temporary files skips uploads in progress.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .store.errors import RESOURCE_LIMIT_EXCEEDED, TrackingError, invalid

_SHA_RE = re.compile(r"[0-9a-f]{64}")
_HEX2_RE = re.compile(r"[0-9a-f]{2}")
MAX_PATH_LENGTH = 1024
LOCK_NAME = ".gc.lock"


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


class GcLock:
    """A readers-writer lock on one file, across threads (in-process) and processes (flock).

    Readers (uploaders) share it; the writer (the garbage collector) excludes them. Inside a
    process, readers share one open file description that holds ``LOCK_SH`` while any reader
    is in, and a waiting writer goes first (a reader that already holds the lock may take it
    again). Across processes and hosts, ``flock`` does the work (NFS emulates it with POSIX
    locks, which is why a process holds one descriptor, never one per reader: closing any
    descriptor would drop a process's POSIX locks). Use :func:`lock_for`, which hands every
    :class:`BlobStore` on the same directory the same lock.
    """

    def __init__(self, path: Path):
        self.path = path
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._fd: int | None = None
        self._mine = threading.local()

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock shared (an uploader between blob commit and row commit)."""
        depth = getattr(self._mine, "depth", 0)
        with self._cond:
            while depth == 0 and (self._writer or self._writers_waiting):
                self._cond.wait()
            if self._readers == 0:
                fd = self._open()
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._readers += 1
        self._mine.depth = depth + 1
        try:
            yield
        finally:
            self._mine.depth = depth
            with self._cond:
                self._readers -= 1
                if self._readers == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock alone (the collector, while it re-checks and deletes one batch)."""
        if getattr(self._mine, "depth", 0):
            raise RuntimeError("exclusive() inside shared() on the same thread would deadlock")
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        fd: int | None = None
        try:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            with self._cond:
                self._writer = False
                self._cond.notify_all()


_LOCKS: dict[str, GcLock] = {}
_LOCKS_GUARD = threading.Lock()
#: temporary files of this process's open writers (flock alone does not exclude a process
#: from itself where NFS turns it into POSIX locks)
_OPEN_TMP: set[str] = set()


def lock_for(root: Path) -> GcLock:
    """The process-wide :class:`GcLock` of a blob directory."""
    path = os.path.realpath(root / LOCK_NAME)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(path)
        if lock is None:
            lock = _LOCKS[path] = GcLock(Path(path))
        return lock


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob as found on disk."""

    sha256: str
    path: Path
    size: int
    mtime: float


class BlobStore:
    """Blobs by sha256 under ``root``, each at most ``max_size`` bytes."""

    def __init__(self, root: str | Path, max_size: int = 10 * 1024**3):
        self.root = Path(root)
        self.max_size = max_size
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.lock = lock_for(self.root)

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives."""
        if not _SHA_RE.fullmatch(sha256):
            raise invalid(f"{sha256!r} is not a sha256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return self.path(sha256).is_file()

    def writer(self) -> BlobWriter:
        """A writer for one new blob."""
        return BlobWriter(self)

    def too_large(self, size: int | None = None) -> TrackingError:
        """RESOURCE_LIMIT_EXCEEDED for a blob over ``max_size`` (of ``size`` bytes, if known)."""
        of = f" of {size} bytes" if size is not None else ""
        return TrackingError(
            f"artifact{of} exceeds the limit of {self.max_size} bytes: split it into smaller "
            "files, or ask an administrator to raise ExperimentsApp.max_artifact_size",
            RESOURCE_LIMIT_EXCEEDED,
        )

    def open(self, sha256: str) -> BinaryIO:
        """The blob for reading."""
        return open(self.path(sha256), "rb")  # noqa: SIM115 - the caller closes it

    def remove(self, sha256: str) -> None:
        """Delete a blob (garbage collection decides which, under :meth:`exclusive`)."""
        self.path(sha256).unlink(missing_ok=True)

    def referencing(self) -> AbstractContextManager[None]:
        """Context: hold while adding a database reference to a blob (shared lock).

        From the moment the blob is in place (or found in place) until the row that
        references it is committed; the garbage collector waits meanwhile.
        """
        return self.lock.shared()

    def exclusive(self) -> AbstractContextManager[None]:
        """Context: the garbage collector's lock (no reference is being added meanwhile)."""
        return self.lock.exclusive()

    def touch(self, sha256: str) -> bool:
        """Refresh a stored blob's mtime (it is in use again); False if it is not stored."""
        try:
            os.utime(self.path(sha256))
        except FileNotFoundError:
            return False
        except PermissionError:
            return self.exists(sha256)  # another owner's file: it is there, keep its time
        return True

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every blob on disk (files elsewhere in the tree are ignored)."""
        for top in sorted(_listdir(self.root)):
            if not _HEX2_RE.fullmatch(top):
                continue
            for mid in sorted(_listdir(self.root / top)):
                if not _HEX2_RE.fullmatch(mid):
                    continue
                for entry in _scandir(self.root / top / mid):
                    name = entry.name
                    if not (_SHA_RE.fullmatch(name) and name.startswith(top + mid)):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted meanwhile
                    if entry.is_file(follow_symlinks=False):
                        yield BlobInfo(name, Path(entry.path), st.st_size, st.st_mtime)

    def iter_tmp(self) -> Iterator[BlobInfo]:
        """Temporary files (uploads in progress, or left by a crash); sha256 is ''."""
        for entry in _scandir(self.root / "tmp"):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if entry.is_file(follow_symlinks=False):
                yield BlobInfo("", Path(entry.path), st.st_size, st.st_mtime)

    def remove_stale_tmp(self, path: Path) -> bool:
        """Delete a temporary file unless a writer holds it; call under :meth:`exclusive`.

        Returns:
            Whether it was deleted.
        """
        if str(path) in _OPEN_TMP:
            return False
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a writer in another process is still writing it
            path.unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


class BlobWriter:
    """Receives a blob in chunks, hashing as it goes; :meth:`commit` puts it in place.

    The temporary file is created under the store's shared lock and pinned with ``flock``
    until the writer is done, so the collector never removes it underneath.
    """

    def __init__(self, store: BlobStore):
        self.store = store
        self.size = 0
        self._hash = hashlib.sha256()
        self._tmp = store.root / "tmp" / f"upload-{secrets.token_hex(8)}"
        with store.referencing():
            self._file: BinaryIO | None = open(self._tmp, "wb")  # noqa: SIM115
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            _OPEN_TMP.add(str(self._tmp))

    def write(self, chunk: bytes) -> None:
        """Add bytes; refuses once the blob exceeds the store's ``max_size``."""
        self.size += len(chunk)
        if self.size > self.store.max_size:
            self.abort()
            raise self.store.too_large()
        self._hash.update(chunk)
        assert self._file is not None
        self._file.write(chunk)

    @property
    def sha256(self) -> str:
        """The digest of the bytes received so far (the blob's name once complete)."""
        return self._hash.hexdigest()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()  # releases the flock
            self._file = None
        _OPEN_TMP.discard(str(self._tmp))

    def commit(self, expected_sha256: str | None = None) -> str:
        """Finish: verify ``expected_sha256`` if given, move into place, return the digest.

        Holds the shared lock itself; callers that then record a reference must hold
        :meth:`BlobStore.referencing` around this call *and* the row's commit. When the
        content is stored already, its mtime is refreshed (it is young again for GC).
        """
        assert self._file is not None
        with self.store.referencing():
            try:
                try:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                finally:
                    self._close()
                digest = self._hash.hexdigest()
                if expected_sha256 is not None and expected_sha256.lower() != digest:
                    raise invalid(
                        f"upload is corrupt: its sha256 is {digest}, the client said "
                        f"{expected_sha256}"
                    )
                final = self.store.path(digest)
                final.parent.mkdir(parents=True, exist_ok=True)
                if self.store.touch(digest):
                    self._tmp.unlink()  # same content already stored
                else:
                    os.replace(self._tmp, final)
            except BaseException:
                self._tmp.unlink(missing_ok=True)
                raise
            return digest

    def abort(self) -> None:
        """Drop a partial upload."""
        self._close()
        self._tmp.unlink(missing_ok=True)
