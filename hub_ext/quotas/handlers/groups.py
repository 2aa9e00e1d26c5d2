"""``api/groups``: usage and limits per group; ``PATCH .../limits`` lowers them."""

from __future__ import annotations

from ..jobs_source import jobs_json
from ..usage import group_json, limits_json
from .api import APIHandler


class GroupListAPIHandler(APIHandler):
    """``GET api/groups``: the groups the caller manages (admins: all), without servers."""

    async def get(self) -> None:
        """Usage of each visible group."""
        viewer = self.manager()
        usage = await self.snapshot()
        groups = [g for g in usage.groups if viewer.can_manage(g.name)]
        jobs, warning = await self.batch_jobs([g.name for g in groups])
        storage, storage_warning = await self.artifact_storage([g.name for g in groups])
        items = [
            {
                **group_json(g, servers=False),
                "jobs": jobs_json(jobs[g.name], items=False) if jobs is not None else None,
                "artifact_storage": storage[g.name].as_dict() if storage is not None else None,
            }
            for g in groups
        ]
        extra = {"jobs_warning": warning} if warning else {}
        if storage_warning:
            extra["storage_warning"] = storage_warning
        self.write_items(items, taken_at=usage.taken_at, **extra)


class GroupAPIHandler(APIHandler):
    """``GET api/groups/{name}``: one group with the servers holding its slots."""

    async def get(self, name: str) -> None:
        """The group's usage, limits and servers (403 unless the caller manages it)."""
        self.require_group(name)
        usage = await self.snapshot()
        jobs, warning = await self.batch_jobs([name])
        storage, storage_warning = await self.artifact_storage([name])
        self.write_json(
            {
                **group_json(self.find_group(usage, name)),
                "jobs": jobs_json(jobs[name]) if jobs is not None else None,
                **({"jobs_warning": warning} if warning else {}),
                "artifact_storage": storage[name].as_dict() if storage is not None else None,
                **({"storage_warning": storage_warning} if storage_warning else {}),
                "taken_at": usage.taken_at,
            }
        )


class GroupLimitsAPIHandler(APIHandler):
    """``api/groups/{name}/limits``: ceiling, lowered and effective values; lower them."""

    async def get(self, name: str) -> None:
        """The group's ceiling, the manager's lowered values and the effective limits."""
        self.require_group(name)
        group = self.find_group(await self.snapshot(), name)
        self.write_json(
            {
                "ceiling": limits_json(group.ceiling),
                "lowered": dict(group.lowered),
                "effective": limits_json(group.effective),
                "warnings": list(group.warnings),
            }
        )

    async def patch(self, name: str) -> None:
        """Lower values: ``{"max_servers": 2, "mem_limit": "2G", "images": null}``.

        400 for a value above the ceiling (the message names it), an unknown or admin-only
        key; 403 unless the caller manages the group. Answers with the group's usage.
        """
        self.require_group(name)
        group = await self.lower(name, self.json_body())
        self.write_json(group_json(group))
