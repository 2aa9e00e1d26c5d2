"""Batch jobs per group, read from the experiments service's job table (read only).

Training jobs that notebooks launch to the batch nodes (Slurm) are recorded by the
``experiments`` service with the group they are charged to. The quotas pages show each
group's queued and running jobs beside its servers. When no tracking database is configured
the pages show no jobs section at all.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub_ext.experiments.jobs.store import ACTIVE_STATES, SqlJobStore
from hub_ext.experiments.store.sql import create_engine

#: At most this many active jobs are listed per request (counts stay exact).
MAX_LISTED = 500


class JobsUnavailable(Exception):
    """The job table could not be read."""


@dataclass(frozen=True)
class BatchJob:
    """A queued or running job.

    Attributes:
        id: the job id.
        user: who launched it.
        group: the group it is charged to.
        executor: ``slurm`` or ``local``.
        state: ``QUEUED`` or ``RUNNING``.
        external_id: the Slurm job id (or the local process id).
        node: where it runs ('' while queued).
        created: seconds since the epoch.
        started: seconds since the epoch (``None`` while queued).
        run_id: the tracking run it writes to.
    """

    id: str
    user: str
    group: str
    executor: str
    state: str
    external_id: str = ""
    node: str = ""
    created: float | None = None
    started: float | None = None
    run_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "id": self.id,
            "user": self.user,
            "executor": self.executor,
            "state": self.state,
            "external_id": self.external_id,
            "node": self.node,
            "created": self.created,
            "started": self.started,
            "run_id": self.run_id,
        }


class JobSource(abc.ABC):
    """Active batch jobs by group."""

    @abc.abstractmethod
    def active_jobs(self, groups: Iterable[str] | None = None) -> list[BatchJob]:
        """Queued and running jobs of ``groups`` (``None``: all), newest first.

        Raises:
            JobsUnavailable: the job table could not be read.
        """


def _seconds(ms: Any) -> float | None:
    return ms / 1000.0 if isinstance(ms, int | float) else None


class TrackingJobSource(JobSource):
    """:class:`JobSource` over the experiments service's database.

    Args:
        uri: the tracking database URL (``LATTICEHUB_TRACKING_DB`` of the experiments
            service), e.g. ``sqlite:////var/lib/latticehub/tracking.sqlite``.
    """

    def __init__(self, uri: str):
        self.engine = create_engine(uri)
        self.store = SqlJobStore(self.engine)

    def active_jobs(self, groups: Iterable[str] | None = None) -> list[BatchJob]:  # noqa: D102
        try:
            jobs = self.store.list_jobs(
                groups=sorted(set(groups)) if groups is not None else None,
                states=list(ACTIVE_STATES),
                limit=MAX_LISTED,
            )
        except sa.exc.SQLAlchemyError as e:  # no table yet, database down, locked ...
            raise JobsUnavailable(f"the job table could not be read: {e.__class__.__name__}") from e
        return [
            BatchJob(
                id=j.id,
                user=j.user,
                group=j.group,
                executor=j.executor,
                state=j.state.value,
                external_id=str(j.external_id or ""),
                node=j.node or "",
                created=_seconds(j.created),
                started=_seconds(j.started),
                run_id=j.run_id,
            )
            for j in jobs
        ]

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()


def jobs_json(jobs: list[BatchJob], *, items: bool = True) -> dict[str, Any]:
    """A group's jobs: counts per state and per user, and (``items``) the jobs."""
    per_user: dict[str, int] = {}
    for job in jobs:
        per_user[job.user] = per_user.get(job.user, 0) + 1
    out: dict[str, Any] = {
        "queued": sum(1 for j in jobs if j.state == "QUEUED"),
        "running": sum(1 for j in jobs if j.state == "RUNNING"),
        "per_user": dict(sorted(per_user.items())),
    }
    if items:
        out["items"] = [j.as_dict() for j in jobs]
    return out
