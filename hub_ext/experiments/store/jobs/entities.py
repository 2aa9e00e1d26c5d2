"""Job entities: a job, a line of a run's timeline, a job token (no storage, no I/O).

A job's state is a run status (``JobState`` is
:class:`~hub_ext.experiments.store.entities.RunStatus`): one vocabulary for both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..entities import JobState

#: Job states that hold a slot: waiting or running.
ACTIVE_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class Job:
    """One launch of a training config on an executor, tied to one tracking run."""

    id: str
    run_id: str
    project_id: int
    user: str
    group: str
    executor: str
    state: JobState
    created: int
    resources: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    external_id: str | None = None
    reason: str = ""
    workdir: str = ""
    node: str = ""
    exit_code: int | None = None
    started: int | None = None
    ended: int | None = None
    resubmit_of: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The API representation."""
        out = dataclasses.asdict(self)
        out["state"] = self.state.value
        out.pop("workdir")
        return out


@dataclass(frozen=True)
class RunEvent:
    """A line in a run's timeline (submitted, started on node X, ended with reason)."""

    run_id: str
    time: int
    kind: str
    message: str


@dataclass(frozen=True)
class JobToken:
    """A credential bound to one run: it may write that run and nothing else."""

    token_hash: str
    job_id: str
    run_id: str
    user: str
    expires: int
    hub_token_id: str = ""
    revoked: bool = False
