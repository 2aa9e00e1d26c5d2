"""Entities to JSON-able dicts for the native API."""

from __future__ import annotations

import math
from typing import Any

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
