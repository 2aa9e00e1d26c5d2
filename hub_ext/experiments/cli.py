"""``latticehub`` command line.

``latticehub sync [DIR]`` replays spooled tracking writes; ``latticehub retention`` deletes
old artifact versions and ``latticehub gc`` deletes unreferenced artifact blobs (both on the
server, with the service's database and artifact directory); ``latticehub db
current|upgrade|downgrade REV|check`` shows or moves the tracking database's schema revision
(the service upgrades it on start anyway).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from latticehub.client import TrackingClient
from latticehub.client.spool import default_dir
from latticehub.client.spool import sync as replay_spools


def sync(directory: Path, client: TrackingClient) -> int:
    """Replay every spool in ``directory``; returns the number of writes still waiting."""
    return replay_spools(directory, client.request)


def _open_registry(db_url: str | None) -> tuple[Any, Any]:
    """The tracking store and the artifact registry of ``db_url`` (refusing a missing file)."""
    from .store import open_backend

    url = db_url or os.environ.get("LATTICEHUB_TRACKING_DB")
    if not url:
        raise SystemExit("give --db-url (or set $LATTICEHUB_TRACKING_DB), e.g. sqlite:////srv/t.db")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:" and not Path(path).is_file():
            raise SystemExit(f"no tracking database at {path}: check --db-url ({url})")
    backend = open_backend(url)
    return backend.tracking, backend.registry


def gc_command(args: argparse.Namespace) -> int:
    """``latticehub gc``: delete unreferenced blobs; 0 on success, 2 if refused.

    It is refused, naming why, also while another ``latticehub gc`` runs on the same
    PostgreSQL database (:data:`~hub_ext.common.dblocks.BLOB_GC_KEY`).
    """
    from .blobs import BlobStore
    from .gc import GcRefused, collect

    root = args.artifact_dir or os.environ.get("LATTICEHUB_ARTIFACT_DIR")
    if not root:
        raise SystemExit("give --artifact-dir (or set $LATTICEHUB_ARTIFACT_DIR)")
    if not Path(root).is_dir():
        raise SystemExit(f"no artifact directory at {root}: check --artifact-dir")
    store, registry = _open_registry(args.db_url)
    try:
        report = collect(
            BlobStore(root),
            registry,
            grace_s=args.grace,
            dry_run=args.dry_run,
            batch_size=args.batch,
            force=args.force,
            progress=lambda r: print(r.progress(), flush=True),
        )
    except GcRefused as e:
        print(f"gc refused: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(report.summary())
    return 0


def retention_command(args: argparse.Namespace) -> int:
    """``latticehub retention``: delete artifact versions the rule does not keep."""
    from .gc import human_bytes
    from .retention import RetentionRule

    try:
        rule = RetentionRule(keep_last=args.keep_last, max_age_days=args.max_age_days)
    except ValueError as e:
        raise SystemExit(f"retention: {e}") from None
    store, registry = _open_registry(args.db_url)
    try:
        report = registry.apply_retention(
            rule, project_id=args.project, name=args.name, dry_run=args.dry_run
        )
    finally:
        store.close()
    done = report.planned if args.dry_run else report.deleted
    verb = "would delete" if args.dry_run else "deleted"
    for v in done:
        print(f"{verb} project {v.project_id} {v.ref} ({human_bytes(v.size)}, run {v.run_id})")
    for v, why in report.skipped:
        print(f"kept project {v.project_id} {v.ref}: {why}")
    print(
        f"retention{' (dry run)' if args.dry_run else ''}: {verb} {len(done)} version(s) "
        f"({human_bytes(sum(v.size for v in done))}), skipped {len(report.skipped)}; "
        "`latticehub gc` frees blobs nothing references any more"
    )
    return 0


def db_command(argv: list[str]) -> int:
    """``latticehub db ...``: Alembic's view of the tracking database (see store.migrations)."""
    from ..common.migrations import command_main
    from .store.migrations import TABLE_PREFIX, TRACKING
    from .store.schema import metadata

    return command_main(
        TRACKING,
        metadata,
        TABLE_PREFIX,
        argv,
        prog="latticehub db",
        url_env="LATTICEHUB_TRACKING_DB",
    )


def _add_server_commands(commands: Any) -> None:
    db_help = "tracking database URL (default: $LATTICEHUB_TRACKING_DB)"
    gc_cmd = commands.add_parser(
        "gc",
        help="delete artifact blobs no run artifact or artifact version references",
        description="Mark and sweep over the artifact directory; safe while the service "
        "runs and uploads (see docs/artifacts.md).",
    )
    gc_cmd.add_argument("--db-url", help=db_help)
    gc_cmd.add_argument("--artifact-dir", help="blob directory (default: $LATTICEHUB_ARTIFACT_DIR)")
    gc_cmd.add_argument(
        "--grace",
        type=float,
        default=3600.0,
        help="keep blobs and temporary files younger than this many seconds (default 3600)",
    )
    gc_cmd.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    gc_cmd.add_argument(
        "--batch", type=int, default=100, help="blobs deleted per hold of the lock (default 100)"
    )
    gc_cmd.add_argument(
        "--force", action="store_true", help="run even if the database references no blob"
    )
    ret_cmd = commands.add_parser(
        "retention",
        help="delete old artifact versions (keeps aliased and latest versions)",
        description="Per artifact name: keep the last N versions, every aliased version and "
        "the latest; optionally drop unaliased versions older than D days.",
    )
    ret_cmd.add_argument("--db-url", help=db_help)
    ret_cmd.add_argument("--project", type=int, help="only this project id")
    ret_cmd.add_argument("--name", help="only this artifact name")
    ret_cmd.add_argument(
        "--keep-last", type=int, default=10, help="versions kept per name (default 10)"
    )
    ret_cmd.add_argument(
        "--max-age-days",
        type=float,
        default=None,
        help="also drop unaliased versions older than this many days",
    )
    ret_cmd.add_argument("--dry-run", action="store_true", help="report, delete nothing")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``latticehub`` console script."""
    parser = argparse.ArgumentParser(
        prog="latticehub", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sync_cmd = commands.add_parser("sync", help="send tracking writes spooled while offline")
    sync_cmd.add_argument("dir", nargs="?", type=Path, default=None, help="spool directory")
    sync_cmd.add_argument("--url", help="tracking service URL (default: from the environment)")
    sync_cmd.add_argument("--token", help="Hub API token (default: $LATTICEHUB_TOKEN)")
    _add_server_commands(commands)
    commands.add_parser(
        "db",
        add_help=False,
        help="the tracking database's schema revision: current, upgrade, downgrade REV, check",
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["db"]:
        return db_command(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "gc":
        return gc_command(args)
    if args.command == "retention":
        return retention_command(args)
    try:
        client = TrackingClient(args.url, args.token)
    except RuntimeError as e:
        parser.error(str(e))
    left = sync(args.dir or default_dir(), client)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
