"""Jobs: submit, list, get, cancel, resubmit; the options a group may use; run timelines."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..jobs.manager import JobManager
from ..jobs.paging import Position, decode_job_token, encode_job_token
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
from .schemas import STATES, PathItems, Query, obj, operation, ref

#: At most this many ``group`` filters per request.
MAX_GROUPS = 500
#: The largest page of jobs (``max_results``).
MAX_PAGE = 1000


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
        """Jobs the caller may see (own and their groups'), newest first, a page at a time.

        Filters: ``state`` and ``group`` (repeatable). A Hub service with the usage scope
        (the quotas service) sees every group's jobs. Paging as for runs and projects:
        ``max_results`` and ``page_token`` (``_pagination.next_token`` of the previous page),
        by keyset, so that jobs submitted meanwhile neither shift nor repeat a page.
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
        after, size, offset = self._page()
        scope = self._scope(asked)
        # one more than the page: a next token only when there is a next page
        jobs = self.manager.jobs.list_jobs(
            **scope, states=states or None, limit=size + 1, offset=offset or 0, after=after
        )
        more = len(jobs) > size
        jobs = jobs[:size]
        last = jobs[-1] if more else None
        pagination: dict[str, Any] = {
            "next_token": encode_job_token(last.created, last.id) if last else None
        }
        if offset is not None:  # deprecated offset paging, for one release
            pagination["offset"] = offset + size if more else None
        self.write_json({"items": [j.to_json() for j in jobs], "_pagination": pagination})

    def _page(self) -> tuple[Position | None, int, int | None]:
        """``(after, size, offset)`` from ``page_token`` and ``max_results``.

        The deprecated ``offset`` and ``limit`` (before token paging) are still accepted for
        one release: ``limit`` stands for ``max_results`` (clamped to :data:`MAX_PAGE`, as it
        was), ``offset`` skips jobs instead of a token (pages shift while jobs are added).

        Raises:
            TrackingError: 400 for a bad token or size, or for the two dialects at odds.
        """
        token, size = self.page_args(maximum=MAX_PAGE)
        if self.get_argument("limit", None) is not None:
            limit = min(self.int_argument("limit", 100, minimum=1), MAX_PAGE)
            # a client speaking both dialects sends the same size twice
            if self.get_argument("max_results", None) is None:
                size = limit
            elif limit != size:
                raise TrackingError(
                    f"max_results={size} and the deprecated limit={limit} differ: send "
                    "max_results alone",
                    BAD_REQUEST,
                )
        offset = None
        if self.get_argument("offset", None) is not None:
            if token:
                raise TrackingError(
                    "page_token and the deprecated offset cannot be combined: leave offset "
                    "out and follow _pagination.next_token",
                    BAD_REQUEST,
                )
            offset = self.int_argument("offset", 0)
        return (decode_job_token(token) if token else None), size, offset

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

_RESOURCES_IN = obj(
    {
        "executor": {"enum": ["local", "slurm"]},
        "partition": {"type": "string"},
        "account": {"type": "string"},
        "nodes": {"type": "integer", "minimum": 1},
        "gpus": {"type": "integer", "minimum": 0, "description": "per node"},
        "cpus": {"type": "integer", "minimum": 1, "description": "per task"},
        "tasks_per_node": {"type": "integer", "minimum": 1},
        "mem": {"type": ["string", "integer"], "description": "e.g. 4G, or MB"},
        "mem_mb": {"type": "integer", "minimum": 1},
        "time": {"type": ["string", "integer"], "description": "e.g. 1:00:00, or minutes"},
        "time_s": {"type": "integer", "minimum": 1},
    }
)
_JOB = ref("Job")

#: OpenAPI path items of this module's routes, assembled by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/runs/{run_id}/events": {
        "get": operation(
            "The run's job timeline, oldest first", returns=ref("RunEventList"), errors=(503,)
        )
    },
    "/api/v1/jobs": {
        "get": operation(
            "Jobs you may see (yours and your groups'; services with "
            "custom:latticehub-usage:read: every group's), newest first",
            query=(
                Query("state", {"enum": STATES}, "only jobs in this state (repeatable)"),
                Query(
                    "group", "string", "only jobs charged to this group, one of yours (repeatable)"
                ),
                Query("page_token", "string", "_pagination.next_token of the previous page"),
                Query(
                    "max_results",
                    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                    f"page size, 1..{MAX_PAGE} (default 100)",
                ),
                Query(
                    "limit",
                    {"type": "integer", "minimum": 1},
                    f"deprecated (one release): max_results; larger values are clamped "
                    f"to {MAX_PAGE}",
                    deprecated=True,
                ),
                Query(
                    "offset",
                    {"type": "integer", "minimum": 0},
                    "deprecated (one release): the first job, instead of page_token; pages "
                    "shift while jobs are submitted",
                    deprecated=True,
                ),
            ),  # fmt: skip
            returns=ref("JobPage"),
            errors=(503,),
        ),
        "post": operation(
            "Launch a training job; creates its run QUEUED (429 at the group's job limit)",
            ok=201,
            returns=_JOB,
            errors=(429, 503),
            body=obj(
                {
                    "project": {"type": "string", "minLength": 1, "description": "a name"},
                    "group": {"type": "string", "description": "group to charge"},
                    "name": {"type": "string"},
                    "config": {"type": "object", "description": "flows.train config"},
                    "resources": _RESOURCES_IN,
                },
                ("project",),
            ),
        ),
    },
    "/api/v1/jobs/options": {
        "get": operation(
            "Executors, partitions and maxima per group",
            returns=obj(
                {"groups": {"type": "object", "additionalProperties": ref("JobLimits")}},
                ("groups",),
            ),
            errors=(503,),
        )
    },
    "/api/v1/jobs/{job_id}": {
        "get": operation("One job", returns=_JOB, errors=(503,)),
        "delete": operation(
            "Cancel (owner or admin); 409 if it has ended", returns=_JOB, errors=(409, 503)
        ),
    },
    "/api/v1/jobs/{job_id}/resubmit": {
        "post": operation(
            "A new job with the same project, config and resources",
            ok=201,
            returns=_JOB,
            errors=(429, 503),
        )
    },
}
