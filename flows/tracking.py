"""Where a training run records itself: the ``experiments`` service, or a local directory.

With ``LATTICEHUB_RUN_ID`` and a token (``LATTICEHUB_TOKEN`` or ``JUPYTERHUB_API_TOKEN``) in the
environment, the run attaches to that tracking run (created QUEUED by the job API) through
:func:`latticehub.client.start_run`. Otherwise it writes the same things to
``OUT/run/``: ``params.json``, ``metrics.jsonl``, ``summary.json`` and ``artifacts/``. The
tracking client (:mod:`latticehub.client`, the only service code ``flows`` uses) is imported
only when a service is configured.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """What the trainer calls; both back ends implement it."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Record hyperparameters once."""

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        """Record metric values at a training step."""

    def log_artifact(self, path: Path, name: str) -> None:
        """Store a file (checkpoint, samples, plot) under ``name``."""


class LocalTracker:
    """Writes the run's record under a directory (used when no tracking service is configured)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        self._metrics = open(root / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def log_params(self, params: dict[str, Any]) -> None:  # noqa: D102
        (self.root / "params.json").write_text(json.dumps(params, indent=1, sort_keys=True))

    def log_metrics(self, values: dict[str, float], step: int) -> None:  # noqa: D102
        record = {"step": step, "time": time.time(), **values}
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def log_artifact(self, path: Path, name: str) -> None:  # noqa: D102
        target = self.root / "artifacts" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)

    def close(self) -> None:
        """Close the metrics file."""
        self._metrics.close()


class ServiceTracker:
    """Adapter from the tracking client's active run to :class:`Tracker`."""

    def __init__(self, run: Any):
        self.run = run

    def log_params(self, params: dict[str, Any]) -> None:  # noqa: D102
        self.run.log_params(params)

    def log_metrics(self, values: dict[str, float], step: int) -> None:  # noqa: D102
        self.run.log_metrics(values, step=step)

    def log_artifact(self, path: Path, name: str) -> None:  # noqa: D102
        self.run.log_artifact(path, name)


def service_configured() -> bool:
    """True when the environment names a tracking run and a token."""
    token = os.environ.get("LATTICEHUB_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
    return bool(os.environ.get("LATTICEHUB_RUN_ID") and token)


@contextlib.contextmanager
def open_tracker(out: Path, enabled: bool = True) -> Iterator[Tracker | None]:
    """The tracker for this process (``None`` on non-zero ranks, which record nothing)."""
    if not enabled:
        yield None
        return
    if service_configured():
        from latticehub.client import start_run

        with start_run("", run_id=os.environ["LATTICEHUB_RUN_ID"]) as run:
            yield ServiceTracker(run)
        return
    tracker = LocalTracker(out / "run")
    try:
        yield tracker
    finally:
        tracker.close()
