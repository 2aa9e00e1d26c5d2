"""Garbage collection of blobs and the lock that keeps it from racing uploads."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from hub_ext.experiments import cli
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.gc import GcRefused, collect
from hub_ext.experiments.store import SqlStore
from hub_ext.experiments.store.registry import SqlArtifactRegistry

OLD = time.time() - 7200


@pytest.fixture
def env(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    blobs = BlobStore(tmp_path / "blobs")
    registry = SqlArtifactRegistry.for_store(store)
    run = store.create_run(store.create_project("p", owner="ann", group=None).id, user="ann")
    yield store, blobs, registry, run
    store.close()


def put(blobs: BlobStore, data: bytes, mtime: float | None = OLD) -> str:
    writer = blobs.writer()
    writer.write(data)
    sha = writer.commit()
    if mtime is not None:
        os.utime(blobs.path(sha), (mtime, mtime))
    return sha


def test_deletes_only_old_unreferenced_blobs(env):
    store, blobs, registry, run = env
    kept_by_artifact = put(blobs, b"model")
    kept_by_version = put(blobs, b"published")
    young = put(blobs, b"just uploaded", mtime=None)
    garbage = put(blobs, b"x" * 1000)
    store.add_artifact(run.id, "model.pt", kept_by_artifact, 5)
    registry.create_version(run.project_id, "flow", run_id=run.id, sha256=kept_by_version, size=9)
    (blobs.root / "README").write_text("not a blob")  # foreign files are left alone
    report = collect(blobs, registry, grace_s=3600)
    assert (report.scanned, report.referenced, report.young) == (4, 2, 1)
    assert (report.deleted, report.freed_bytes) == (1, 1000)
    assert not blobs.exists(garbage)
    assert all(blobs.exists(s) for s in (kept_by_artifact, kept_by_version, young))
    assert (blobs.root / "README").exists()
    assert "deleted 1 (1000 B)" in report.summary()
    # with no grace, the young unreferenced blob goes too
    assert collect(blobs, registry, grace_s=0).deleted == 1 and not blobs.exists(young)


def test_dry_run_deletes_nothing(env):
    store, blobs, registry, run = env
    store.add_artifact(run.id, "a", put(blobs, b"a"), 1)
    garbage = put(blobs, b"garbage")
    tmp = blobs.root / "tmp" / "upload-stale"
    tmp.write_bytes(b"partial")
    os.utime(tmp, (OLD, OLD))
    report = collect(blobs, registry, dry_run=True)
    assert (report.deleted, report.freed_bytes, report.tmp_deleted) == (1, 7, 1)
    assert blobs.exists(garbage) and tmp.exists()
    assert "would delete 1" in report.summary()


def test_refuses_when_the_database_references_nothing(env):
    _, blobs, registry, _ = env
    garbage = put(blobs, b"orphan")
    with pytest.raises(GcRefused, match="database URL"):
        collect(blobs, registry, grace_s=0)
    assert blobs.exists(garbage)
    assert collect(blobs, registry, grace_s=0, force=True).deleted == 1


def test_stale_temp_files_go_but_not_uploads_in_progress(env, tmp_path):
    store, blobs, registry, run = env
    store.add_artifact(run.id, "a", put(blobs, b"a"), 1)
    stale = blobs.root / "tmp" / "upload-crashed"
    stale.write_bytes(b"left by a crash")
    writing = blobs.writer()  # this process, still writing
    writing.write(b"half")
    holder = subprocess.Popen(  # another process, still writing
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys, time
            f = open({str(blobs.root / "tmp" / "upload-other")!r}, "wb")
            fcntl.flock(f, fcntl.LOCK_EX)
            print("held", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        report = collect(blobs, registry, grace_s=0)
    finally:
        holder.communicate("", timeout=10)
    assert (report.tmp_deleted, report.tmp_in_use) == (1, 2)
    assert not stale.exists()
    writing.write(b" and the rest")
    sha = writing.commit()
    assert blobs.path(sha).read_bytes() == b"half and the rest"


def test_reupload_of_stored_content_refreshes_its_age(env):
    _, blobs, _, _ = env
    sha = put(blobs, b"same")
    assert blobs.path(sha).stat().st_mtime == pytest.approx(OLD)
    assert put(blobs, b"same", mtime=None) == sha
    assert blobs.path(sha).stat().st_mtime > time.time() - 60


def test_gc_waits_for_an_upload_between_blob_and_row(env):
    """The deterministic form of the race: the blob is in place, its row not yet."""
    store, blobs, registry, run = env
    store.add_artifact(run.id, "other", put(blobs, b"other"), 5)
    data = b"fresh upload of old content"
    sha = put(blobs, data)  # stored long ago, unreferenced: garbage, until ...
    in_place, release = threading.Event(), threading.Event()

    def upload():
        with blobs.referencing():  # ... an upload of the same content finds it in place
            writer = blobs.writer()
            writer.write(data)
            assert writer.commit() == sha
            in_place.set()
            release.wait(10)
            store.add_artifact(run.id, "model.pt", sha, len(data))

    uploader = threading.Thread(target=upload)
    uploader.start()
    assert in_place.wait(10)
    reports = []
    collector = threading.Thread(target=lambda: reports.append(collect(blobs, registry, grace_s=0)))
    collector.start()
    collector.join(0.5)
    assert collector.is_alive(), "GC deleted while an upload held the lock"
    assert blobs.exists(sha)
    release.set()
    uploader.join(10)
    collector.join(10)
    assert reports[0].deleted == 0 and reports[0].rescued == 1
    assert hashlib.sha256(blobs.path(sha).read_bytes()).hexdigest() == sha


def test_gc_in_another_process_waits_for_the_shared_lock(env, tmp_path):
    """flock across processes: the service process holds the lock, the GC CLI waits."""
    store, blobs, registry, run = env
    store.add_artifact(run.id, "other", put(blobs, b"other"), 5)
    sha = put(blobs, b"about to be referenced")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from hub_ext.experiments.blobs import BlobStore
            from hub_ext.experiments.store import SqlStore
            store = SqlStore({store.uri!r})
            with BlobStore({str(blobs.root)!r}).referencing():
                print("held", flush=True)
                sys.stdin.readline()
                store.add_artifact({run.id!r}, "model.pt", {sha!r}, 22)
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        out = []
        gc_thread = threading.Thread(
            target=lambda: out.append(
                cli.main(["gc", "--db-url", store.uri, "--artifact-dir", str(blobs.root),
                          "--grace", "0"])
            )
        )  # fmt: skip
        gc_thread.start()
        gc_thread.join(0.5)
        assert gc_thread.is_alive() and blobs.exists(sha)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        gc_thread.join(30)
    finally:
        holder.communicate(timeout=30)
    assert out == [0] and blobs.exists(sha)


def test_lock_misuse_is_refused(env):
    _, blobs, _, _ = env
    with blobs.referencing(), blobs.referencing():  # re-entrant for readers
        with pytest.raises(RuntimeError, match="deadlock"):
            with blobs.exclusive():
                pass
    with blobs.exclusive():
        pass
    with pytest.raises(ValueError, match="grace"):
        collect(blobs, None, grace_s=-1)


def test_progress_is_reported_per_thousand_blobs(env):
    store, blobs, registry, run = env
    keep = put(blobs, b"keep")
    store.add_artifact(run.id, "k", keep, 4)
    for i in range(2100):  # placed directly: the writer's fsync would take seconds
        sha = hashlib.sha256(b"%d" % i).hexdigest()
        blobs.path(sha).parent.mkdir(parents=True, exist_ok=True)
        blobs.path(sha).write_bytes(b"%d" % i)
        os.utime(blobs.path(sha), (OLD, OLD))
    lines = []
    report = collect(blobs, registry, progress=lambda r: lines.append(r.progress()))
    assert len(lines) == 2 and lines[0].startswith("scanned 1000 blobs")
    assert report.deleted == 2100 and blobs.exists(keep)


def test_cli_gc_and_retention(env, tmp_path, capsys):
    store, blobs, registry, run = env
    for i in range(4):
        data = b"version %d" % i
        sha = put(blobs, data)
        store.add_artifact(run.id, "model.pt", sha, len(data))  # replaces the previous one
        registry.create_version(run.project_id, "flow", run_id=run.id, sha256=sha, size=len(data))
    args = ["--db-url", store.uri]
    assert cli.main(["retention", *args, "--keep-last", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete project 1 flow:v1" in out and "would delete 2 version(s)" in out
    assert cli.main(["retention", *args, "--keep-last", "2"]) == 0
    assert "deleted 2 version(s)" in capsys.readouterr().out
    assert cli.main(["gc", *args, "--artifact-dir", str(blobs.root), "--grace", "0"]) == 0
    out = capsys.readouterr().out
    assert "gc: scanned 4 blobs" in out and "deleted 2" in out
    assert registry.referenced_blobs() == {b.sha256 for b in blobs.iter_blobs()}
    with pytest.raises(SystemExit, match="no tracking database"):
        cli.main(["gc", "--db-url", f"sqlite:///{tmp_path / 'typo.sqlite'}",
                  "--artifact-dir", str(blobs.root)])  # fmt: skip
    with pytest.raises(SystemExit, match="keep_last"):
        cli.main(["retention", *args, "--keep-last", "0"])


def test_cli_help_smoke():
    for command in ("gc", "retention"):
        result = subprocess.run(
            [sys.executable, "-m", "hub_ext.experiments.cli", command, "--help"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0 and "--db-url" in result.stdout
