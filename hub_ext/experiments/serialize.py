"""Entities to JSON-able dicts for the native API."""

from __future__ import annotations

import bisect
import copy
import itertools
import math
from collections.abc import Sequence
from typing import Any, overload

from latticehub.columnar import MetricColumns

from .store.entities import Artifact, LogLine, Metric, Project, Run


def number_json(value: float) -> float | str:
    """A double for JSON, which has no NaN/Infinity: those become strings, as in MLflow."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def metric(m: Metric) -> dict[str, Any]:
    """A metric point."""
    return {"key": m.key, "value": number_json(m.value), "timestamp": m.timestamp, "step": m.step}


def project(p: Project) -> dict[str, Any]:
    """A project."""
    return {
        "id": p.id,
        "name": p.name,
        "owner": p.owner,
        "group": p.group,
        "shared_with": list(p.shared_with),
        "artifact_location": p.artifact_location,
        "lifecycle_stage": p.lifecycle_stage,
        "creation_time": p.creation_time,
        "last_update_time": p.last_update_time,
        "description": p.description,
        "tags": p.tags,
    }


def run(r: Run) -> dict[str, Any]:
    """A run with params, tags, latest metrics and its records."""
    return {
        "id": r.id,
        "project_id": r.project_id,
        "name": r.name,
        "user": r.user,
        "status": r.status.value,
        "status_reason": r.status_reason,
        "start_time": r.start_time,
        "end_time": r.end_time,
        "heartbeat": r.heartbeat,
        "lifecycle_stage": r.lifecycle_stage,
        "artifact_uri": r.artifact_uri,
        "params": r.params,
        "tags": r.tags,
        "metrics": {k: metric(m) for k, m in r.metrics.items()},
        "code": r.code,
        "environment": r.environment,
        "failure": r.failure,
    }


def log_line(line: LogLine) -> dict[str, Any]:
    """A log line."""
    return {"offset": line.offset, "text": line.text, "timestamp": line.timestamp}


def artifact(a: Artifact) -> dict[str, Any]:
    """An artifact record."""
    return {"path": a.path, "sha256": a.sha256, "size": a.size, "created": a.created}


class ColumnPoints(Sequence[dict[str, Any]]):
    """The newest ``limit`` points of a batch of metric columns, as point dicts made on access.

    What the live ring keeps of a columnar write: a batch of a thousand points costs the
    writer no object per point, and most of them fall out of the ring unread. Tails of long
    columns are copied, so that the ring never holds a whole large batch.
    """

    def __init__(self, columns: Sequence[MetricColumns], limit: int):
        parts: list[tuple[str, Any, Any, Any]] = []
        room = limit
        for column in reversed(columns):
            take = min(room, len(column))
            if take:
                start = len(column) - take
                cols: tuple[Any, ...] = (column.steps, column.timestamps, column.values)
                if start:  # a slice of a NumPy array is a view of all of it: copy
                    cols = tuple(copy.copy(c[start:]) for c in cols)
                parts.append((column.key, *cols))
            room -= take
            if not room:
                break
        parts.reverse()
        self._parts = parts
        self._ends = list(itertools.accumulate(len(part[1]) for part in parts))

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("point index out of range")
        part = bisect.bisect_right(self._ends, index)
        key, steps, timestamps, values = self._parts[part]
        i = index - (self._ends[part - 1] if part else 0)
        return {
            "key": key,
            "value": number_json(float(values[i])),
            "timestamp": int(timestamps[i]),
            "step": int(steps[i]),
        }
