"""The pages: every visible group and node (``/``), one group with its form (``/groups/{name}``).

Server-rendered tornado templates (autoescaping on), no script. The form posts back to the
group page with the XSRF token (``_xsrf``); HubOAuth declines the cookie of a post without it.
"""

from __future__ import annotations

from typing import Any

from tornado.escape import url_escape

from ...common.pages import PageMixin
from .. import display as fmt
from ..lowering import ORDER, LoweringError, changes_from_form, form_fields
from ..usage import GroupUsage
from .base import QuotaError, QuotasHandler

#: What each key means, for the limits table and the form.
LABELS = {
    "max_servers": "servers the group runs at once",
    "max_servers_per_user": "servers per user",
    "mem_limit": "memory per server",
    "cpu_limit": "CPUs per server",
    "gpus": "GPUs per server",
    "images": "images",
    "nodes": "nodes",
    "gpu_sharing": "servers may share GPUs",
    "shared_readonly": "shared directory read-only",
}


class PageHandler(PageMixin, QuotasHandler):
    """An HTML page: login redirect, HTML errors, the prefix and XSRF token in templates."""

    service_title = "Quotas"

    def page_url(self, *parts: str) -> str:
        """An absolute path under the prefix (parts are URL-escaped: group names)."""
        return super().page_url(*(url_escape(p, plus=False) for p in parts))

    def wants_login(self) -> bool:
        """A browser without a session goes through the Hub's login (GET only)."""
        return self.request.method in ("GET", "HEAD")

    def get_template_namespace(self) -> dict[str, Any]:
        """The shared namespace and the display helpers."""
        namespace = super().get_template_namespace()
        namespace.update(fmt=fmt, labels=LABELS, order=ORDER)
        return namespace


class OverviewPage(PageHandler):
    """``/``: usage against limits of each group the caller manages, and of each node."""

    async def get(self) -> None:
        """The overview (403 for callers who manage no group)."""
        viewer = self.manager()
        usage = await self.snapshot()
        groups = [g for g in usage.groups if viewer.can_manage(g.name)]
        jobs, jobs_warning = await self.batch_jobs([g.name for g in groups])
        storage, storage_warning = await self.artifact_storage([g.name for g in groups])
        self.render(
            "index.html",
            viewer=viewer,
            groups=groups,
            jobs=jobs,
            jobs_warning=jobs_warning,
            storage=storage,
            storage_warning=storage_warning,
            nodes=usage.nodes,
            taken_at=usage.taken_at,
        )


class GroupPage(PageHandler):
    """``/groups/{name}``: limits, servers, pending spawns; the form that lowers values."""

    async def get(self, name: str) -> None:
        """The group page (403 unless the caller manages the group)."""
        self.require_group(name)
        usage = await self.snapshot()
        await self.render_group(self.find_group(usage, name), saved=self.get_argument("saved", ""))

    async def post(self, name: str) -> None:
        """The form: lower values within the ceiling, then back to the page (303)."""
        self.require_group(name)  # identifies the caller first (token or cookie)
        self.check_form_xsrf()
        ceiling = self.policy.ceiling_of(name)
        if ceiling is None or not self.policy.is_lowerable(name):
            raise QuotaError(404, f"group {name!r} has no share of the servers to lower")
        form = {
            k: [v.decode("utf-8", "replace") for v in vs]
            for k, vs in self.request.body_arguments.items()
        }
        try:
            group = await self.lower(name, changes_from_form(ceiling, form))
        except (QuotaError, LoweringError) as e:
            if e.status_code >= 500 or e.status_code in (401, 403, 404):
                raise
            self.set_status(e.status_code)
            usage = await self.snapshot()
            await self.render_group(self.find_group(usage, name), form_error=e.message, form=form)
            return
        self.redirect(self.page_url("groups", group.name) + "?saved=1", status=303)

    async def render_group(
        self,
        group: GroupUsage,
        *,
        form_error: str | None = None,
        form: dict[str, list[str]] | None = None,
        saved: str = "",
    ) -> None:
        """Render the group page."""
        fields = form_fields(group.ceiling) if group.lowerable and group.ceiling else []
        jobs, jobs_warning = await self.batch_jobs([group.name])
        storage, storage_warning = await self.artifact_storage([group.name])
        self.render(
            "group.html",
            jobs=jobs[group.name] if jobs is not None else None,
            jobs_warning=jobs_warning,
            storage=storage[group.name] if storage is not None else None,
            storage_warning=storage_warning,
            group=group,
            fields=fields,
            form_error=form_error,
            form=form,
            saved=bool(saved) and form_error is None,
        )
