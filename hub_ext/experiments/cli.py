"""``latticehub`` command line: ``latticehub sync [DIR]`` replays spooled tracking writes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .client import TrackingClient
from .spool import Spool, default_dir


def sync(directory: Path, client: TrackingClient) -> int:
    """Replay every spool in ``directory``; returns the number of writes still waiting."""
    spools = sorted(directory.glob("*.jsonl"))
    if not spools:
        print(f"nothing to sync in {directory}")
        return 0
    left_total = 0
    for i, path in enumerate(spools, 1):
        sent, left = Spool(path).replay(client.request)
        left_total += left
        state = "done" if not left else f"{left} left (service unreachable?)"
        print(f"[{i}/{len(spools)}] run {path.stem}: {sent} write(s) sent, {state}")
    return left_total


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``latticehub`` console script."""
    parser = argparse.ArgumentParser(prog="latticehub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sync_cmd = commands.add_parser("sync", help="send tracking writes spooled while offline")
    sync_cmd.add_argument("dir", nargs="?", type=Path, default=None, help="spool directory")
    sync_cmd.add_argument("--url", help="tracking service URL (default: from the environment)")
    sync_cmd.add_argument("--token", help="Hub API token (default: $LATTICEHUB_TOKEN)")
    args = parser.parse_args(argv)
    try:
        client = TrackingClient(args.url, args.token)
    except RuntimeError as e:
        parser.error(str(e))
    left = sync(args.dir or default_dir(), client)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
