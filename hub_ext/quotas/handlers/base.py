"""The base handler: the caller from Hub OAuth / tokens, the manager check, live snapshots."""

from __future__ import annotations

import json
from typing import Any

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import web

from latticehub.policy import Policy

from ...common.hub_client import HubError, HubSource
from ...common.managers import Viewer, viewer_from_model
from ..docker_source import EngineSource, EngineUnavailable
from ..jobs_source import BatchJob, JobsUnavailable
from ..lowering import LoweringError, plan_lowering
from ..snapshot import take_snapshot
from ..storage_source import GroupStorage, StorageUnavailable
from ..usage import GroupUsage, Usage

MAX_JSON_BODY = 64 * 1024


class QuotaError(Exception):
    """An error for the caller: HTTP ``status_code`` and a readable ``message``."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def not_a_manager(name: str) -> QuotaError:
    """403 for a caller who manages no group."""
    return QuotaError(
        403,
        f"{name} manages no group. A group's managers hold the Hub scope "
        "groups!group=<name> (an admin grants it with a role); admins see every group.",
    )


class QuotasHandler(HubOAuthenticated, web.RequestHandler):
    """Shared by pages and API: ``self.viewer``, ``self.snapshot()``, ``self.lower()``."""

    _refused: dict | None = None

    @property
    def hub_auth(self) -> Any:  # noqa: D102 - from HubAuthenticated
        return self.settings["hub_auth"]

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

    @property
    def log(self) -> Any:  # noqa: D102
        return self.settings["log"]

    def check_hub_user(self, model: dict) -> dict:
        """Remember a caller the Hub identified but who lacks the access scope (403, not 401)."""
        try:
            return super().check_hub_user(model)
        except UserNotAllowed:
            self._refused = model
            raise

    @property
    def viewer(self) -> Viewer:
        """The caller; 401 without credentials, 403 without access to this service."""
        model = self.current_user
        if not model:
            if self._refused is not None:
                raise QuotaError(
                    403,
                    f"{self._refused.get('name')} may not use the quotas service: it is for "
                    "admins and group managers (scope access:services!service=quotas).",
                )
            raise QuotaError(
                401,
                "Authentication required: log in through the Hub or send "
                "'Authorization: token <Hub API token>'",
            )
        return viewer_from_model(model)

    async def batch_jobs(self, groups: list[str]) -> tuple[dict[str, list[BatchJob]] | None, str]:
        """Queued and running batch jobs of ``groups``, and a warning when unreadable.

        ``None`` (with no warning) when the service is not told where the experiments
        service is.
        """
        source = self.settings.get("job_source")
        if source is None:
            return None, ""
        try:
            jobs = await source.active_jobs(groups)
        except JobsUnavailable as e:
            self.log.warning("batch jobs not shown: %s", e)
            return None, f"Batch jobs are not shown: {e}"
        by_group: dict[str, list[BatchJob]] = {g: [] for g in groups}
        for job in jobs:
            if job.group in by_group:
                by_group[job.group].append(job)
        return by_group, ""

    async def artifact_storage(
        self, groups: list[str]
    ) -> tuple[dict[str, GroupStorage] | None, str]:
        """Artifact storage of ``groups`` and a warning when unreadable.

        ``None`` (with no warning) when the service is not told where the experiments
        service is.
        """
        source = self.settings.get("storage_source")
        if source is None:
            return None, ""
        try:
            found = await source.storage(groups)
        except StorageUnavailable as e:
            self.log.warning("artifact storage not shown: %s", e)
            return None, f"Artifact storage is not shown: {e}"
        return {g: found.get(g, GroupStorage(g, 0, None)) for g in groups}, ""

    def manager(self) -> Viewer:
        """The caller if they manage at least one group; else 403."""
        viewer = self.viewer
        if not viewer.is_manager:
            raise not_a_manager(viewer.name)
        return viewer

    def require_group(self, name: str) -> Viewer:
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

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        """Use a :class:`QuotaError`'s status."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, QuotaError):
            status_code = exc.status_code
        super().send_error(status_code, **kwargs)

    def error_message(self, status_code: int, kwargs: dict) -> str:
        """The readable message of the error being written."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, QuotaError):
            return exc.message
        if isinstance(exc, web.HTTPError) and exc.log_message:
            return exc.log_message % exc.args if exc.args else exc.log_message
        if status_code >= 500:
            return "Internal error: the service's log has the details."
        return self._reason

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Callers' mistakes are logged briefly, without a traceback."""
        if isinstance(value, QuotaError):
            self.log.info("%s %s: %s", self.request.method, self.request.path, value.message)
        else:
            super().log_exception(typ, value, tb)

    def set_default_headers(self) -> None:
        """No framing by other sites; answers are live, never cached."""
        self.set_header("X-Frame-Options", "SAMEORIGIN")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
