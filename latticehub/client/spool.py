"""Writes that could not reach the service, kept on disk in order and replayed later.

One JSON line per request (``method``, ``path``, ``body``) in ``<dir>/<run_id>.jsonl``.
Every write of the API is safe to repeat (batches are idempotent, log lines carry their
offsets), so replaying a spool after a partial earlier replay loses and duplicates nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
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

    @property
    def refused_path(self) -> Path:
        """Where writes the service refused for good are kept (``<run_id>.refused``)."""
        return self.path.with_suffix(".refused")

    def replay(self, send: Any) -> tuple[int, int]:
        """Send waiting writes in order with ``send(method, path, body)``.

        Stops at the first ``OSError`` or transient refusal (429, 5xx: still unreachable or
        busy) and keeps the rest. A write refused for good (e.g. 400) cannot succeed later:
        it moves to :attr:`refused_path`, kept on disk rather than dropped, and the replay
        goes on.

        Returns:
            ``(sent, left)``: writes done (or set aside as refused), writes still waiting.
        """
        from .errors import TrackingAPIError

        ops = self.read()
        sent = 0
        for method, path, body in ops:
            try:
                send(method, path, body)
            except OSError:
                break
            except TrackingAPIError as e:
                if e.transient:
                    break
                Spool(self.refused_path).append([(method, path, body)])
            sent += 1
        rest = ops[sent:]
        if rest:
            tmp = self.path.with_suffix(".tmp")
            Spool(tmp).append(rest)
            os.replace(tmp, self.path)
        else:
            self.path.unlink(missing_ok=True)
        return sent, len(rest)


def sync(
    directory: Path | None = None,
    send: Callable[..., Any] | None = None,
    *,
    report: Callable[[str], None] = print,
) -> int:
    """Replay every spool in ``directory`` (default: :func:`default_dir`), in name order.

    Args:
        directory: where the spools are, e.g. a job's ``~/.latticehub/spool``.
        send: ``send(method, path, body)`` of a client (default: a
            :class:`~latticehub.client.TrackingClient` from the environment).
        report: where one line per run goes, e.g. ``logging.info`` (default: ``print``).

    Returns:
        The number of writes still waiting (the service could not be reached).
    """
    directory = directory or default_dir()
    if send is None:
        from .api import TrackingClient

        send = TrackingClient().request
    spools = sorted(directory.glob("*.jsonl"))
    if not spools:
        report(f"nothing to sync in {directory}")
        return 0
    left_total = 0
    for i, path in enumerate(spools, 1):
        spool = Spool(path)
        sent, left = spool.replay(send)
        left_total += left
        state = "done" if not left else f"{left} left (service unreachable?)"
        if spool.refused_path.exists():
            state += f"; writes the service refused are kept in {spool.refused_path}"
        report(f"[{i}/{len(spools)}] run {path.stem}: {sent} write(s) sent, {state}")
    return left_total
