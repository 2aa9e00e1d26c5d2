"""Tracking entities: plain frozen dataclasses, independent of the storage back end."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class RunStatus(enum.StrEnum):
    """Life cycle of a run.

    ``QUEUED`` (submitted, not started), ``RUNNING``, then one of the final states
    ``FINISHED``, ``FAILED``, ``KILLED`` (cancelled, preempted for good, SIGTERM) or
    ``LOST`` (heartbeats stopped: the process died without saying so).
    """

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    LOST = "LOST"

    @property
    def is_final(self) -> bool:
        """Whether the run has ended."""
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.LOST)


#: A job's state is its run's status: one enum, one set of stored strings. A job is QUEUED
#: until its executor starts it, RUNNING, then ends as its run does; jobs add no state of
#: their own (``hub_ext.experiments.jobs.states`` maps Slurm's states onto these).
JobState = RunStatus

ACTIVE = "active"
DELETED = "deleted"


@dataclass(frozen=True)
class Viewer:
    """Who asks: a Hub user (with groups), an admin, or a job token bound to one run."""

    name: str
    groups: frozenset[str] = frozenset()
    admin: bool = False
    run_id: str | None = None
    #: for a job token: the one project it may read (its run's)
    project_id: int | None = None


@dataclass(frozen=True)
class Project:
    """A project (MLflow: experiment), owned by a group or private to its creator."""

    id: int
    name: str
    owner: str
    group: str | None
    artifact_location: str
    lifecycle_stage: str = ACTIVE
    creation_time: int = 0
    last_update_time: int = 0
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    shared_with: tuple[str, ...] = ()


class Metric(NamedTuple):
    """One point of a metric's time series (``timestamp`` in ms since the epoch).

    A named tuple, not a dataclass: histories and batches make many of them (half the cost).
    """

    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass(frozen=True)
class Param:
    """A hyperparameter: written once per run."""

    key: str
    value: str


@dataclass(frozen=True)
class Tag:
    """A mutable key/value label of a run or project."""

    key: str
    value: str


@dataclass(frozen=True)
class Run:
    """A run with its data (params, tags, latest metric values) and its records."""

    id: str
    project_id: int
    name: str
    user: str
    status: RunStatus
    start_time: int
    end_time: int | None = None
    heartbeat: int | None = None
    lifecycle_stage: str = ACTIVE
    artifact_uri: str = ""
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] = field(default_factory=dict)
    status_reason: str = ""


@dataclass(frozen=True)
class LogLine:
    """One line of a run's stdout or stderr; ``offset`` counts lines from 0 per stream."""

    stream: str
    offset: int
    text: str
    timestamp: int


@dataclass(frozen=True)
class Artifact:
    """A file of a run, stored once by content (``sha256``)."""

    run_id: str
    path: str
    sha256: str
    size: int
    created: int


@dataclass(frozen=True)
class Page:
    """One page of results and the token of the next (``None`` at the end)."""

    items: list
    next_token: str | None = None
    total: int | None = None
