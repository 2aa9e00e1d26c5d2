"""The base handler: the caller from Hub OAuth / tokens, the manager check, live snapshots."""

from __future__ import annotations

import json
from typing import Any

from latticehub.policy import Policy

from ...common.handlers import LiveHeadersMixin, ServiceError, ServiceHandler
from ...common.hub_client import HubError, HubSource
from ...common.managers import GroupRights, viewer_from_model
from ..docker_source import EngineSource, EngineUnavailable
from ..jobs_source import BatchJob, JobsUnavailable
from ..lowering import LoweringError, plan_lowering
from ..snapshot import take_snapshot
from ..storage_source import GroupStorage, StorageUnavailable
from ..usage import GroupUsage, Usage

MAX_JSON_BODY = 64 * 1024


class QuotaError(ServiceError):
    """An error for the caller: HTTP ``status_code``, a readable ``message`` (and a ``code``)."""


def not_a_manager(name: str) -> QuotaError:
    """403 for a caller who manages no group."""
    return QuotaError(
        403,
        f"{name} manages no group. A group's managers hold the Hub scope "
        "groups!group=<name> (an admin grants it with a role); admins see every group.",
    )


class QuotasHandler(LiveHeadersMixin, ServiceHandler):
    """Shared by pages and API: ``self.viewer``, ``self.snapshot()``, ``self.lower()``."""

    domain_errors = (ServiceError,)

    @property
    def policy(self) -> Policy:
        """The admin's ceilings and the spawner's settings."""
        return self.settings["policy"]

    @property
    def hub(self) -> HubSource:
        """The Hub API with the service's token."""
        return self.settings["hub"]

    @property
    def engine(self) -> EngineSource:
        """The container engine."""
        return self.settings["engine"]

    def refused_error(self) -> QuotaError:
        """403 (not 401) for a caller the Hub identified who lacks the access scope."""
        return QuotaError(
            403,
            f"{(self.refused or {}).get('name')} may not use the quotas service: it is for "
            "admins and group managers (scope access:services!service=quotas).",
        )

    @property
    def viewer(self) -> GroupRights:
        """The caller; 401 without credentials, 403 without access to this service."""
        model = self.current_user
        if not model:
            if self.refused is not None:
                raise self.refused_error()
            raise QuotaError(
                401,
                "Authentication required: log in through the Hub or send "
                "'Authorization: token <Hub API token>'",
            )
        return viewer_from_model(model)

    async def _read_beside(
        self, setting: str, method: str, groups: list[str], failed: str
    ) -> tuple[Any, str]:
        """What the source in ``settings[setting]`` tells of ``groups``, and a warning.

        ``(None, "")`` when the service is not told where the experiments service is;
        ``(None, "<failed>: <why>")`` when the source cannot be read.
        """
        source = self.settings.get(setting)
        if source is None:
            return None, ""
        try:
            return await getattr(source, method)(groups), ""
        except (JobsUnavailable, StorageUnavailable) as e:
            self.log.warning("%s: %s", failed, e)
            return None, f"{failed}: {e}"

    async def batch_jobs(self, groups: list[str]) -> tuple[dict[str, list[BatchJob]] | None, str]:
        """Queued and running batch jobs of ``groups``, and a warning when unreadable.

        ``None`` (with no warning) when the service is not told where the experiments
        service is.
        """
        jobs, warning = await self._read_beside(
            "job_source", "active_jobs", groups, "Batch jobs are not shown"
        )
        if jobs is None:
            return None, warning
        by_group: dict[str, list[BatchJob]] = {g: [] for g in groups}
        for job in jobs:
            if job.group in by_group:
                by_group[job.group].append(job)
        return by_group, ""

    async def artifact_storage(
        self, groups: list[str]
    ) -> tuple[dict[str, GroupStorage] | None, str]:
        """Artifact storage of ``groups`` and a warning when unreadable (``None``: not told)."""
        found, warning = await self._read_beside(
            "storage_source", "storage", groups, "Artifact storage is not shown"
        )
        if found is None:
            return None, warning
        return {g: found.get(g, GroupStorage(g, 0, None)) for g in groups}, ""

    def manager(self) -> GroupRights:
        """The caller if they manage at least one group; else 403."""
        viewer = self.viewer
        if not viewer.is_manager:
            raise not_a_manager(viewer.name)
        return viewer

    def require_group(self, name: str) -> GroupRights:
        """The caller if they manage ``name``; 403 otherwise (existence is not disclosed)."""
        viewer = self.manager()
        if not viewer.can_manage(name):
            raise QuotaError(403, f"{viewer.name} is not a manager of group {name!r}")
        return viewer

    async def snapshot(self) -> Usage:
        """Usage read live from the Hub and the engine (502 / 503 when they fail)."""
        try:
            return await take_snapshot(policy=self.policy, hub=self.hub, engine=self.engine)
        except HubError as e:
            raise QuotaError(502, e.message) from None
        except EngineUnavailable as e:
            raise QuotaError(503, str(e)) from None

    def find_group(self, usage: Usage, name: str) -> GroupUsage:
        """A group the caller manages, or 403 / 404."""
        self.require_group(name)
        group = usage.group(name)
        if group is None:
            raise QuotaError(
                404, f"group {name!r} has no share of the servers (it is not in group_limits)"
            )
        return group

    async def lower(self, name: str, changes: Any) -> GroupUsage:
        """Check a manager's changes against the ceiling, write the group's properties.

        The Hub keeps every other property key; under ``latticehub`` only the sent keys
        change (``null`` removes one). Returns the group's usage after the write.
        """
        viewer = self.require_group(name)
        ceiling = self.policy.ceiling_of(name)
        if ceiling is None or not self.policy.is_lowerable(name):
            raise QuotaError(404, f"group {name!r} has no share of the servers to lower")
        try:
            model = await self.hub.group(name)
        except HubError as e:
            raise QuotaError(502, e.message) from None
        if model is None:
            raise QuotaError(404, f"group {name!r} does not exist in the Hub")
        try:
            properties = plan_lowering(
                group=name, ceiling=ceiling, properties=model.get("properties"), changes=changes
            )
        except LoweringError as e:
            raise QuotaError(e.status_code, e.message) from None
        try:
            await self.hub.set_properties(name, properties)
        except HubError as e:
            if e.status_code == 403:
                raise QuotaError(
                    502,
                    f"the quotas service may not write group {name!r}: its role lacks the "
                    f"scope groups!group={name}; ask an admin to add it ({e.message})",
                ) from None
            raise QuotaError(502 if e.status_code >= 500 else e.status_code, e.message) from None
        self.log.info("%s lowered group %s: %s", viewer.name, name, json.dumps(changes))
        usage = await self.snapshot()
        return self.find_group(usage, name)

    def json_body(self) -> Any:
        """The request's JSON body; 400 with the reason when it is not JSON."""
        if len(self.request.body) > MAX_JSON_BODY:
            raise QuotaError(413, f"JSON body over {MAX_JSON_BODY} bytes")
        try:
            return json.loads(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError) as e:
            raise QuotaError(400, f"Malformed JSON body: {e}") from None
