"""Garbage collection of artifact blobs: mark and sweep, never a referenced blob.

A blob is deleted only if

1. no row references it (run artifacts ``lh_artifacts`` and artifact versions
   ``lh_artifact_versions``, see :meth:`AbstractArtifactRegistry.referenced_among
   <hub_ext.experiments.store.registry.AbstractArtifactRegistry.referenced_among>`),
2. its mtime is older than the grace period (default 1 h; an upload of content that is
   already stored refreshes the mtime), and
3. the deletion cannot race an upload: everything that adds a reference holds the blob
   store's lock *shared* from putting the blob in place (or finding it there) until the row
   is committed; the collector takes it *exclusive* for each batch, then checks 1. and 2.
   again and deletes. So a reference committed before the batch is seen, and an upload that
   commits after it puts its blob (back) in place itself. See :mod:`hub_ext.experiments.blobs`.

Mark (walk the tree, drop young and referenced blobs) runs without the lock; only the
re-check and the unlinks of one batch (``batch_size`` blobs) run under it, so uploads wait
at most that long. Stale temporary files in ``<root>/tmp`` (older than the grace period and
not pinned by a live writer) are removed too.

One collection at a time per database: on PostgreSQL, :func:`collect` holds the advisory lock
:data:`~hub_ext.common.dblocks.BLOB_GC_KEY` while it runs and refuses to start while another
collector (on any host) holds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..common.dblocks import BLOB_GC_KEY, AdvisoryLock
from .blobs import BlobInfo, BlobStore
from .store.registry import AbstractArtifactRegistry

DEFAULT_GRACE_S = 3600.0
#: blobs re-checked and deleted per hold of the exclusive lock
DEFAULT_BATCH = 100
#: blobs whose references are looked up per query in the mark phase
MARK_CHUNK = 1000


class GcRefused(RuntimeError):
    """The collector will not run: the database looks wrong for this blob directory."""


class GcBusy(GcRefused):
    """The collector will not run: another collection on the same database is running."""


@dataclass
class GcReport:
    """Counts of one collection (``dry_run``: what it would have deleted)."""

    dry_run: bool = False
    grace_s: float = DEFAULT_GRACE_S
    scanned: int = 0
    scanned_bytes: int = 0
    referenced: int = 0
    young: int = 0
    deleted: int = 0
    freed_bytes: int = 0
    #: unreferenced at mark time, but referenced or touched again by the sweep's re-check
    rescued: int = 0
    tmp_deleted: int = 0
    tmp_freed_bytes: int = 0
    #: stale temporary files kept because a live writer still holds them
    tmp_in_use: int = 0
    seconds: float = 0.0

    def progress(self) -> str:
        """A one-line progress report."""
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"scanned {self.scanned} blobs: {self.referenced} referenced, {self.young} younger "
            f"than {self.grace_s:g} s, {verb} {self.deleted} ({human_bytes(self.freed_bytes)})"
        )

    def summary(self) -> str:
        """The closing report."""
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"gc{' (dry run)' if self.dry_run else ''}: scanned {self.scanned} blobs "
            f"({human_bytes(self.scanned_bytes)}) in {self.seconds:.1f} s; kept "
            f"{self.referenced} referenced, {self.young} within the {self.grace_s:g} s grace "
            f"period, {self.rescued} referenced again meanwhile; {verb} {self.deleted} "
            f"({human_bytes(self.freed_bytes)}) and {self.tmp_deleted} stale temporary file(s) "
            f"({human_bytes(self.tmp_freed_bytes)}); {self.tmp_in_use} temporary file(s) in use"
        )


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def collect(
    blobs: BlobStore,
    registry: AbstractArtifactRegistry,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    force: bool = False,
    progress: Callable[[GcReport], None] | None = None,
    progress_every: int = 1000,
    clock: Callable[[], float] = time.time,
    lock: AdvisoryLock | None = None,
) -> GcReport:
    """Delete unreferenced blobs older than ``grace_s`` (see the module docstring).

    Args:
        blobs: the blob store.
        registry: knows every reference (run artifacts and artifact versions).
        grace_s: minimum age in seconds of a deleted blob or temporary file.
        dry_run: count what would go, delete nothing.
        batch_size: blobs per hold of the exclusive lock.
        force: run even when the database references no blob at all.
        progress: called with the report every ``progress_every`` scanned blobs.
        progress_every: see ``progress``.
        clock: seconds since the epoch (a seam for tests).
        lock: held while collecting (default: the advisory lock
            :data:`~hub_ext.common.dblocks.BLOB_GC_KEY` on the registry's ``engine``, a
            no-op on SQLite).

    Raises:
        GcBusy: another collection holds the lock (it runs on another host or shell).
        GcRefused: the database references nothing but the directory holds blobs (a wrong
            database URL would otherwise delete every blob); pass ``force`` if that is meant.
        ValueError: for a negative grace period or a batch size below 1.
    """
    if grace_s < 0:
        raise ValueError(f"grace_s={grace_s} must be >= 0 seconds (default {DEFAULT_GRACE_S:g})")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    if lock is None:
        lock = AdvisoryLock(getattr(registry, "engine", None), BLOB_GC_KEY, "blob gc")
    if not lock.try_acquire():
        raise GcBusy(
            "another gc is running on this database (it holds the PostgreSQL advisory lock "
            f"{lock.key}): wait until it has finished, then run gc again if still needed"
        )
    try:
        return _collect(
            blobs, registry, grace_s=grace_s, dry_run=dry_run, batch_size=batch_size,
            force=force, progress=progress, progress_every=progress_every, clock=clock,
        )  # fmt: skip
    finally:
        lock.release()


def _collect(
    blobs: BlobStore,
    registry: AbstractArtifactRegistry,
    *,
    grace_s: float,
    dry_run: bool,
    batch_size: int,
    force: bool,
    progress: Callable[[GcReport], None] | None,
    progress_every: int,
    clock: Callable[[], float],
) -> GcReport:
    started = time.monotonic()
    report = GcReport(dry_run=dry_run, grace_s=grace_s)
    if not force and not registry.has_references():
        first = next(blobs.iter_blobs(), None)
        if first is not None:
            raise GcRefused(
                f"the database references no artifact but {blobs.root} holds blobs (e.g. "
                f"{first.sha256}): is the database URL right? Pass force to delete them all"
            )

    candidates: list[BlobInfo] = []
    old: list[BlobInfo] = []

    def mark() -> None:
        still = registry.referenced_among(b.sha256 for b in old)
        for b in old:
            if b.sha256 in still:
                report.referenced += 1
            else:
                candidates.append(b)
        old.clear()
        while len(candidates) >= batch_size:
            _sweep(blobs, registry, candidates[:batch_size], report, grace_s, dry_run, clock)
            del candidates[:batch_size]

    for info in blobs.iter_blobs():
        report.scanned += 1
        report.scanned_bytes += info.size
        if info.mtime > clock() - grace_s:
            report.young += 1
        else:
            old.append(info)
            if len(old) >= MARK_CHUNK:
                mark()
        if progress is not None and report.scanned % progress_every == 0:
            progress(report)
    mark()
    if candidates:
        _sweep(blobs, registry, candidates, report, grace_s, dry_run, clock)
    _sweep_tmp(blobs, report, grace_s, dry_run, clock)
    report.seconds = time.monotonic() - started
    return report


def _sweep(
    blobs: BlobStore,
    registry: AbstractArtifactRegistry,
    batch: list[BlobInfo],
    report: GcReport,
    grace_s: float,
    dry_run: bool,
    clock: Callable[[], float],
) -> None:
    """Re-check one batch under the exclusive lock and delete what is still garbage."""
    if dry_run:
        report.deleted += len(batch)
        report.freed_bytes += sum(b.size for b in batch)
        return
    with blobs.exclusive():
        still = registry.referenced_among(b.sha256 for b in batch)
        limit = clock() - grace_s
        for b in batch:
            if b.sha256 in still:
                report.rescued += 1
                continue
            try:
                st = b.path.stat()
            except FileNotFoundError:
                continue  # another collector was faster
            if st.st_mtime > limit:
                report.rescued += 1  # uploaded again meanwhile (and not yet referenced)
                continue
            blobs.remove(b.sha256)
            report.deleted += 1
            report.freed_bytes += st.st_size


def _sweep_tmp(
    blobs: BlobStore, report: GcReport, grace_s: float, dry_run: bool, clock: Callable[[], float]
) -> None:
    limit = clock() - grace_s
    stale = [f for f in blobs.iter_tmp() if f.mtime <= limit]
    if not stale:
        return
    if dry_run:
        report.tmp_deleted += len(stale)
        report.tmp_freed_bytes += sum(f.size for f in stale)
        return
    with blobs.exclusive():
        for f in stale:
            if blobs.remove_stale_tmp(f.path):
                report.tmp_deleted += 1
                report.tmp_freed_bytes += f.size
            else:
                report.tmp_in_use += 1
