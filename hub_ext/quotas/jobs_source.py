"""Batch jobs per group, asked of the experiments service over HTTP.

Training jobs that notebooks launch (``docker`` or Slurm) are recorded by the ``experiments``
service with the group they are charged to. The quotas pages show each group's queued and
running jobs beside its servers, read from ``GET /api/v1/jobs?state=QUEUED&state=RUNNING
&group=...`` with this service's own Hub token (the custom scope
``custom:latticehub-usage:read``, as for artifact storage): nothing of the experiments
service's tables or modules is used here. Without ``QuotasApp.experiments_api`` the pages
show no jobs section.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .experiments_api import ExperimentsReader

#: At most this many active jobs are listed per request.
MAX_LISTED = 500
#: Jobs per page of the experiments API.
PAGE = 250
ACTIVE_STATES = ("QUEUED", "RUNNING")


class JobsUnavailable(Exception):
    """The jobs could not be read."""


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
    async def active_jobs(self, groups: Iterable[str]) -> list[BatchJob]:
        """Queued and running jobs of ``groups``, newest first (at most :data:`MAX_LISTED`).

        Raises:
            JobsUnavailable: with the reason, when they cannot be read.
        """


def _seconds(ms: Any) -> float | None:
    return ms / 1000.0 if isinstance(ms, int | float) else None


def batch_job(item: dict[str, Any]) -> BatchJob:
    """A job of the experiments API as the pages show it."""
    return BatchJob(
        id=str(item["id"]),
        user=str(item["user"]),
        group=str(item["group"]),
        executor=str(item["executor"]),
        state=str(item["state"]),
        external_id=str(item.get("external_id") or ""),
        node=str(item.get("node") or ""),
        created=_seconds(item.get("created")),
        started=_seconds(item.get("started")),
        run_id=str(item.get("run_id") or ""),
    )


class ExperimentsJobSource(ExperimentsReader, JobSource):
    """:class:`JobSource` over the experiments API (``GET /api/v1/jobs``)."""

    unavailable = JobsUnavailable

    async def active_jobs(self, groups: Iterable[str]) -> list[BatchJob]:  # noqa: D102
        names = sorted(set(groups))
        if not names:
            return []
        found: list[BatchJob] = []
        token: str | None = ""
        while token is not None and len(found) < MAX_LISTED:
            query = [("state", s) for s in ACTIVE_STATES] + [("group", g) for g in names]
            query.append(("max_results", str(PAGE)))
            if token:
                query.append(("page_token", token))
            page = await self.get_items("/api/v1/jobs", query)
            try:
                found.extend(batch_job(i) for i in page["items"])
            except (KeyError, TypeError) as e:
                raise JobsUnavailable(f"the experiments service sent a job without {e}") from e
            # keyset pages: stable while jobs are submitted between two reads
            token = (page.get("_pagination") or {}).get("next_token") or None
        return found[:MAX_LISTED]


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
