"""Jobs: submit, list, get, cancel, resubmit; the options a group may use; run timelines."""

from __future__ import annotations

from dataclasses import asdict

from ..jobs.manager import JobManager
from ..jobs.spec import JobInputError, limits_for
from ..jobs.states import JobState
from ..store.errors import (
    BAD_REQUEST,
    EXECUTOR_UNAVAILABLE,
    PERMISSION_DENIED,
    TrackingError,
    invalid,
)
from .base import BaseHandler

#: At most this many ``group`` filters per request.
MAX_GROUPS = 500


class JobsBase(BaseHandler):
    """Handlers that need the job manager (503 when jobs are off on this service)."""

    @property
    def manager(self) -> JobManager:
        """The job manager from the application settings."""
        manager = self.settings.get("jobs")
        if manager is None:
            raise TrackingError("jobs are not enabled on this service", EXECUTOR_UNAVAILABLE)
        return manager


class JobListHandler(JobsBase):
    """``/api/v1/jobs``."""

    async def post(self) -> None:
        """Submit ``{"project", "config", "resources", "name"?, "group"?}`` -> 201 job."""
        manager = self.manager
        body = self.json_body()
        if not isinstance(body.get("group"), str | None):
            raise invalid(f"group must be the name of one of your groups, not {body['group']!r}")
        job = await manager.submit(self.viewer, body)
        self.write_json(job.to_json(), 201)

    def get(self) -> None:
        """Jobs the caller may see (own and their groups'), newest first.

        Filters: ``state`` and ``group`` (repeatable). A Hub service with the usage scope
        (the quotas service) sees every group's jobs.
        """
        states = self.get_arguments("state")
        bad = [s for s in states if s not in JobState.__members__]
        if bad:
            raise TrackingError(
                f"unknown state(s) {bad}: use {', '.join(JobState.__members__)}", BAD_REQUEST
            )
        asked = self.get_arguments("group")
        if len(asked) > MAX_GROUPS:
            raise TrackingError(f"ask for at most {MAX_GROUPS} groups per request", BAD_REQUEST)
        limit = min(self.int_argument("limit", 100, minimum=1), 1000)
        offset = self.int_argument("offset", 0)
        scope = self._scope(asked)
        jobs = self.manager.jobs.list_jobs(
            **scope, states=states or None, limit=limit, offset=offset
        )
        nxt = offset + limit if len(jobs) == limit else None
        self.write_json({"items": [j.to_json() for j in jobs], "_pagination": {"offset": nxt}})

    def _scope(self, asked: list[str]) -> dict[str, list[str]]:
        """``list_jobs`` filters for the caller (users or groups: either matches)."""
        if self.usage_reader() or self.viewer.admin:
            return {"groups": asked} if asked else {}
        viewer = self.viewer
        if viewer.run_id is not None:
            return {"users": [], "groups": []}
        if asked:
            strangers = sorted(set(asked) - viewer.groups)
            if strangers:
                raise TrackingError(
                    f"{viewer.name} is not a member of {', '.join(map(repr, strangers))}: ask "
                    "for your own groups (or none, for your jobs and your groups')",
                    PERMISSION_DENIED,
                )
            return {"groups": asked}
        return {"users": [viewer.name], "groups": sorted(viewer.groups)}


class JobHandler(JobsBase):
    """``/api/v1/jobs/{id}``."""

    def get(self, job_id: str) -> None:
        """One job."""
        self.write_json(self.manager.find(self.viewer, job_id).to_json())

    async def delete(self, job_id: str) -> None:
        """Cancel (owner or admin); the state turns KILLED at the next poll."""
        job = self.manager.find(self.viewer, job_id)
        job = await self.manager.cancel(self.viewer, job)
        self.write_json(job.to_json())


class JobResubmitHandler(JobsBase):
    """``/api/v1/jobs/{id}/resubmit``."""

    async def post(self, job_id: str) -> None:
        """A new job with the same project, config and resources -> 201."""
        job = self.manager.find(self.viewer, job_id)
        self.write_json((await self.manager.resubmit(self.viewer, job)).to_json(), 201)


class JobOptionsHandler(JobsBase):
    """``/api/v1/jobs/options``: per group, the executors, partitions and maxima allowed."""

    def get(self) -> None:
        """What the caller's groups may ask for (for launch forms)."""
        viewer = self.viewer
        groups = {}
        for group in sorted(viewer.groups):
            try:
                limits = limits_for(self.manager.limits, group)
            except JobInputError:
                continue
            allowed = asdict(limits)
            allowed["executors"] = [e for e in limits.executors if e in self.manager.executors]
            groups[group] = allowed
        self.write_json({"groups": groups})


class RunEventsHandler(JobsBase):
    """``/api/v1/runs/{id}/events``: the run's job timeline."""

    def get(self, run_id: str) -> None:
        """Events oldest first."""
        self.find_run(run_id)
        events = self.manager.jobs.list_events(run_id)
        self.write_json({"items": [asdict(e) for e in events]})


default_handlers = [
    (r"/api/v1/jobs", JobListHandler),
    (r"/api/v1/jobs/options", JobOptionsHandler),
    (r"/api/v1/jobs/([0-9a-f]{32})", JobHandler),
    (r"/api/v1/jobs/([0-9a-f]{32})/resubmit", JobResubmitHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)/events", RunEventsHandler),
]
