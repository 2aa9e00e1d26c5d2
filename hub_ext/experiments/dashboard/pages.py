"""The dashboard's pages: projects, a project's runs table, a run, a comparison of runs.

Pages use the API's access rules (:mod:`..access`: another group's run is a 404, a share is
read-only, managers of a group may give its projects to another owner) and render tornado
templates with autoescaping on. Live parts (log tail, metric plots, status) are drawn by
``static/dashboard.js`` from the run's event stream (``api/v1/runs/{id}/stream``). Every
state-changing form carries the XSRF token, and every ``fetch`` the ``X-XSRFToken`` header
(``<meta name="lh-xsrf">``): HubOAuth refuses cookie authentication of a request that lacks
it.
"""

from __future__ import annotations

from typing import Any

from ...common.pages import PageMixin
from ..access import (
    can_manage_project,
    can_read_project,
    can_transfer_project,
    can_write_project,
    can_write_run,
    group_rights,
    require_read,
    visible_project_ids,
)
from ..handlers.base import BaseHandler
from ..handlers.projects import checked_new_owner
from ..search import SearchError, parse_filter, parse_order_by
from ..store.entities import Project, Run, Tag
from ..store.errors import BAD_REQUEST, INVALID_PARAMETER_VALUE, TrackingError, invalid
from . import query

#: Projects listed on the home page.
MAX_PROJECTS = 200
#: Runs on one compare page.
MAX_COMPARE = 20
#: Lines of each log stream the run page starts with (older lines: the logs API).
LOG_TAIL = 500
#: System tags shown apart from the user's own.
SYSTEM_TAG_PREFIXES = ("mlflow.", "latticehub.")
#: The run tag that names the run's job (set by the job manager).
JOB_TAG = "latticehub.job_id"
#: Registered versions of a project looked through for those a run produced.
MAX_VERSIONS_SCANNED = 1000
#: Produced versions whose consumers are listed on a run page.
MAX_LINEAGE = 20


class PageHandler(PageMixin, BaseHandler):
    """A dashboard page: HTML errors, the service prefix and the XSRF token in templates."""

    service_title = "Experiments"

    def error_links(self) -> list[tuple[str, str]]:
        """Back to the projects, or to the Hub."""
        return [(self.prefix, "Your projects"), (self.hub_home, "Hub home")]

    def get_template_namespace(self) -> dict[str, Any]:
        """The shared namespace, the query helpers and the XSRF token (for ``fetch``)."""
        namespace = super().get_template_namespace()
        namespace.update(q=query, xsrf_value=self.xsrf_token.decode("ascii"))
        return namespace


class ProjectsPage(PageHandler):
    """``/``: the projects the viewer may read, with each one's latest run."""

    def get(self) -> None:
        """List projects (name, group, sharing, latest run)."""
        viewer = self.viewer
        ids = visible_project_ids(self.store, viewer)
        page = self.store.search_projects(ids=ids, max_results=MAX_PROJECTS)
        latest: dict[int, Run] = {}
        for project in page.items:
            # newest first by start time: one indexed row per project
            found = self.store.search_runs(project_ids=[project.id], max_results=1).items
            if found:
                latest[project.id] = found[0]
        self.render(
            "projects.html",
            projects=page.items,
            latest=latest,
            more=page.next_token is not None,
            viewer=viewer,
        )


class ProjectPage(PageHandler):
    """``/projects/{id}``: the runs table (filter, sort, columns, server-side paging)."""

    def find_project(self, project_id: str) -> Project:
        """The project if the viewer may read it; else 404."""
        try:
            number = int(project_id)
        except ValueError:
            raise TrackingError(
                f"Experiment with id '{project_id}' does not exist", "RESOURCE_DOES_NOT_EXIST"
            ) from None
        project = self.store.get_project(number)
        require_read(self.viewer, project, f"Experiment with id '{project_id}'")
        return project

    def get(self, project_id: str) -> None:
        """One page of runs, as the query string says."""
        self.render_project(self.find_project(project_id))

    async def post(self, project_id: str) -> None:
        """A form: ``action`` = ``transfer`` (``owner``): give the project to another member.

        For managers of the project's group and admins (403 on the page for others).
        """
        project = self.find_project(project_id)  # identifies the caller first
        self.check_form_xsrf()
        action = self.get_body_argument("action", "")
        try:
            if action != "transfer":
                raise invalid(f"unknown action {action!r}: use transfer")
            owner = self.get_body_argument("owner", "")
            owner = checked_new_owner(
                self.viewer,
                group_rights(self.current_user),
                project,
                owner,
                await self.new_owner_lookup(project, owner),
            )
            if owner != project.owner:
                self.store.update_project(project.id, owner=owner)
        except TrackingError as e:
            if e.http_status >= 500:
                raise
            self.set_status(e.http_status)
            self.render_project(project, form_error=e.message)
            return
        self.redirect(self.page_url("projects", str(project.id)), status=303)

    def render_project(self, project: Project, form_error: str | None = None) -> None:
        """Render the runs table of ``project`` (and its forms)."""
        args = {k: [v.decode("utf-8", "replace") for v in vs]
                for k, vs in self.request.query_arguments.items()}  # fmt: skip
        filter_text = self.get_argument("filter", "")
        order_by = self.get_argument("order_by", "")
        size = query.page_size(self.get_argument("size", None))
        token = self.get_argument("page_token", None) or None
        error = None
        runs: list[Run] = []
        next_token = None
        try:
            filters = parse_filter(filter_text)
            orders = parse_order_by([order_by] if order_by else [])
        except SearchError as e:
            error = str(e)
        else:
            try:
                page = self.store.search_runs(
                    project_ids=[project.id], filters=filters, order_by=orders,
                    page_token=token, max_results=size,
                )  # fmt: skip
            except TrackingError as e:
                if e.code not in (BAD_REQUEST, INVALID_PARAMETER_VALUE):
                    raise
                error = e.message
            else:
                runs, next_token = page.items, page.next_token
        if error and not form_error:
            self.set_status(400)
        rights = group_rights(self.current_user)
        chosen = self.get_arguments("col") if "col" in self.request.arguments else None
        shown, available = query.choose_columns(chosen, runs)
        first, last, previous = query.page_window(token, size, len(runs))
        path = self.page_url("projects", str(project.id))
        self.render(
            "project.html",
            project=project,
            runs=runs,
            shown=shown,
            available=available,
            chosen_explicitly=chosen is not None,
            filter_text=filter_text,
            order_by=order_by,
            size=size,
            error=error,
            first=first,
            last=last,
            next_url=query.url_with(path, args, page_token=next_token) if next_token else None,
            prev_url=query.url_with(path, args, page_token=previous)
            if previous is not None
            else None,
            path=path,
            args=args,
            can_manage=can_manage_project(self.viewer, project, rights),
            can_write=can_write_project(self.viewer, project),
            can_transfer=can_transfer_project(self.viewer, project, rights),
            form_error=form_error,
        )


class RunPage(PageHandler):
    """``/runs/{id}``: status, params, live logs and plots, records, artifacts; forms."""

    def get(self, run_id: str) -> None:
        """The run page."""
        self.render_run(self.find_run(run_id))

    def post(self, run_id: str) -> None:
        """A form: ``action`` = ``rename`` (name), ``set_tag`` (key, value), ``delete_tag``."""
        run = self.writable_run(run_id)  # identifies the caller first (token or cookie)
        self.check_form_xsrf()
        action = self.get_body_argument("action", "")
        try:
            if action == "rename":
                self.store.update_run(run.id, name=self.get_body_argument("name", "").strip())
            elif action == "set_tag":
                key = self.get_body_argument("key", "").strip()
                self.store.set_tag(run.id, Tag(key, self.get_body_argument("value", "")))
            elif action == "delete_tag":
                self.store.delete_tag(run.id, self.get_body_argument("key", ""))
            else:
                raise invalid(f"unknown action {action!r}: use rename, set_tag or delete_tag")
        except TrackingError as e:
            if e.http_status >= 500:
                raise
            self.set_status(e.http_status)
            self.render_run(self.store.get_run(run.id), form_error=e.message)
            return
        self.redirect(self.page_url("runs", run.id), status=303)

    def render_run(self, run: Run, form_error: str | None = None) -> None:
        """Render the run page for ``run``."""
        project = self.store.get_project(run.project_id)
        manager = self.settings.get("jobs")
        job = None
        events: list = []
        if manager is not None:
            job_id = run.tags.get(JOB_TAG)
            if job_id:
                try:
                    job = manager.find(self.viewer, job_id)
                except TrackingError:
                    job = None
            events = manager.jobs.list_events(run.id)
        artifacts = self.store.list_artifacts(run.id)
        used, made = self.lineage(run)
        user_tags = {k: v for k, v in run.tags.items() if not k.startswith(SYSTEM_TAG_PREFIXES)}
        system_tags = {k: v for k, v in run.tags.items() if k.startswith(SYSTEM_TAG_PREFIXES)}
        can_write = can_write_run(self.viewer, run)
        job_active = job is not None and job.state.value in ("QUEUED", "RUNNING")
        data = {
            "run_id": run.id,
            "project_id": project.id,
            "status": run.status.value,
            "start_time": run.start_time,
            "end_time": run.end_time,
            "final": run.status.is_final,
            "metric_keys": sorted(run.metrics),
            "events": len(events),
            "tail": LOG_TAIL,
            "job_id": job.id if job is not None and job_active and can_write else None,
        }
        self.render(
            "run.html",
            run=run,
            project=project,
            job=job,
            job_active=job_active,
            events=events,
            artifacts=artifacts,
            used=used,
            made=made,
            user_tags=user_tags,
            system_tags=system_tags,
            can_write=can_write,
            form_error=form_error,
            data=data,
        )

    def lineage(self, run: Run) -> tuple[list, list]:
        """Registry lineage: ``(used, made)``.

        ``used``: the versions the run consumed (of projects the viewer may read);
        ``made``: ``(version, consuming run ids the viewer may see)`` for the versions
        registered from this run's artifacts. Both empty without a registry.
        """
        registry = self.settings.get("registry")
        if registry is None:
            return [], []
        viewer = self.viewer
        readable: dict[int, bool] = {}

        def may_read(project_id: int) -> bool:
            if project_id not in readable:
                try:
                    project = self.store.get_project(project_id)
                except TrackingError:
                    readable[project_id] = False
                else:
                    readable[project_id] = can_read_project(viewer, project)
            return readable[project_id]

        try:
            used = [u for u in registry.uses_of_run(run.id) if may_read(u.version.project_id)]
            versions = registry.list_versions(run.project_id, max_results=MAX_VERSIONS_SCANNED)
            made = []
            for version in [v for v in versions.items if v.run_id == run.id][:MAX_LINEAGE]:
                consumers = registry.lineage(version).consumed_by
                made.append((version, [u.run_id for u in consumers if may_read(u.project_id)]))
        except TrackingError as e:
            self.log.info("lineage of run %s: %s", run.id, e.message)
            return [], []
        return used, made


class ComparePage(PageHandler):
    """``/compare?run=<id>&run=<id>``: metric curves overlaid, params side by side."""

    def get(self) -> None:
        """Compare up to :data:`MAX_COMPARE` runs (404 if one of them is not visible)."""
        ids = list(dict.fromkeys(i.strip() for i in self.get_arguments("run") if i.strip()))
        if len(ids) > MAX_COMPARE:
            raise invalid(f"compare at most {MAX_COMPARE} runs at a time, not {len(ids)}")
        runs = [self.find_run(run_id) for run_id in ids]
        metric_keys = sorted({key for run in runs for key in run.metrics})
        data = {
            "runs": [{"id": r.id, "name": r.name} for r in runs],
            "metric_keys": metric_keys,
        }
        projects = {r.project_id: self.store.get_project(r.project_id) for r in runs}
        self.render(
            "compare.html",
            runs=runs,
            projects=projects,
            param_rows=query.param_rows(runs),
            metric_keys=metric_keys,
            data=data,
        )
