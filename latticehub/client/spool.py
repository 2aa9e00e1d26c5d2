"""Writes that could not reach the service, kept on disk in order and replayed later.

One JSON line per request (``method``, ``path``, ``body``) in ``<dir>/<run_id>.jsonl``.
Every write of the API is safe to repeat (batches are idempotent, log lines carry their
offsets), so replaying a spool after a partial earlier replay loses and duplicates nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

Op = tuple[str, str, Any]


def default_dir() -> Path:
    """``$LATTICEHUB_SPOOL_DIR`` or ``~/.latticehub/spool``."""
    return Path(os.environ.get("LATTICEHUB_SPOOL_DIR", Path.home() / ".latticehub" / "spool"))


class Spool:
    """The spool file of one run."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def for_run(cls, run_id: str, directory: Path | None = None) -> Spool:
        """The spool of ``run_id`` in ``directory`` (default: :func:`default_dir`)."""
        return cls((directory or default_dir()) / f"{run_id}.jsonl")

    def pending(self) -> bool:
        """Whether writes wait in this spool."""
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, ops: list[Op]) -> None:
        """Add writes at the end, durably."""
        if not ops:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for method, path, body in ops:
                f.write(json.dumps({"method": method, "path": path, "body": body}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[Op]:
        """All waiting writes, oldest first (a torn last line is ignored)."""
        if not self.path.exists():
            return []
        ops = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            ops.append((item["method"], item["path"], item["body"]))
        return ops

    def replay(self, send: Any) -> tuple[int, int]:
        """Send waiting writes in order with ``send(method, path, body)``.

        Stops at the first ``OSError`` (still unreachable) and keeps the rest.

        Returns:
            ``(sent, left)``.
        """
        ops = self.read()
        sent = 0
        try:
            for method, path, body in ops:
                send(method, path, body)
                sent += 1
        except OSError:
            pass
        rest = ops[sent:]
        if rest:
            tmp = self.path.with_suffix(".tmp")
            Spool(tmp).append(rest)
            os.replace(tmp, self.path)
        else:
            self.path.unlink(missing_ok=True)
        return sent, len(rest)
