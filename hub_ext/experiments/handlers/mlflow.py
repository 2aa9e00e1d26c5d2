"""MLflow REST API 2.0 (tracking subset) on the tracking store, for the unmodified client.

Point the client at the service and give it a Hub API token::

    MLFLOW_TRACKING_URI=https://hub.example.org/services/experiments
    MLFLOW_TRACKING_TOKEN=<Hub API token>      # sent as "Authorization: Bearer <token>"

An MLflow experiment is a project (``experiment_id`` is the project id as a string) and
runs are runs. Access is the native API's: what a caller may not read does not exist
(RESOURCE_DOES_NOT_EXIST, 404); readable but not writable (a share is read access) is
PERMISSION_DENIED (403). Experiments created here are private to their creator unless the
experiment tag ``latticehub.group`` names one of the creator's groups; responses show the
derived tags ``latticehub.owner`` and ``latticehub.group``. Names are unique per group (per
owner for private experiments); ``get-by-name`` resolves a name among the experiments the
caller may read (``group/name`` picks one group's), as the native API does.

Statuses: QUEUED is shown as SCHEDULED and LOST as FAILED. Deleting an experiment hides
its runs (they show as deleted, as MLflow's cascade does) until it is restored.
Artifacts (``mlflow-artifacts``) are served elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..access import (
    can_manage_project,
    can_read_project,
    can_write_project,
    can_write_run,
    find_project_by_name,
    group_rights,
    require,
    require_read,
    visible_project_ids,
)
from ..search import SearchError, parse_filter, parse_order_by
from ..store.abstract import MAX_PAGE_SIZE, decode_token, encode_token
from ..store.entities import ACTIVE, DELETED, Metric, Param, Project, Run, RunStatus, Tag, Viewer
from ..store.errors import (
    INVALID_STATE,
    RESOURCE_DOES_NOT_EXIST,
    RESOURCE_LIMIT_EXCEEDED,
    TrackingError,
    invalid,
    not_found,
)
from ..store.validation import check_run_id, check_tag
from .base import BaseHandler
from .mlflow_convert import (
    GROUP_TAG,
    RESERVED_TAG_PREFIX,
    Fields,
    experiment_json,
    metric_json,
    plain_metrics,
    run_info_json,
    run_json,
    run_status,
    select_experiments,
    status_comparison,
    view_type,
)

PREFIX = "api/2.0/mlflow/"
MAX_BATCH_REQUEST_BYTES = 1_000_000  # MLflow's MAX_BATCH_LOG_REQUEST_SIZE
DEFAULT_MAX_RESULTS = 1000
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
_REPEATED = frozenset({"order_by", "experiment_ids"})
_SCAN_CHUNK = 1000


class MlflowError(TrackingError):
    """A coded error with its own HTTP status (endpoint not found, method not allowed)."""

    def __init__(self, message: str, code: str, status: int):
        super().__init__(message, code)
        self.status = status

    @property
    def http_status(self) -> int:
        """The HTTP status given at construction."""
        return self.status


def _experiment_number(experiment_id: str) -> int:
    if not experiment_id.isdigit():
        raise invalid(f"Invalid experiment ID: '{experiment_id}'. Experiment IDs are integers.")
    if int(experiment_id) == 0:
        raise TrackingError(
            "Experiment with id '0' does not exist: latticehub has no shared Default "
            "experiment. Call mlflow.set_experiment('<name>') (or pass an experiment_id) "
            "first.",
            RESOURCE_DOES_NOT_EXIST,
        )
    return int(experiment_id)


def _write_refusal(viewer: Viewer, project: Project) -> str:
    if viewer.run_id is not None:
        return "Permission denied: job tokens cannot create runs"
    writers = f"members of group {project.group}" if project.group else f"its owner {project.owner}"
    return (
        f"Permission denied: you may read but not write experiment {project.id}; runs are "
        f"created by {writers} and admins (a share gives read access only): create an "
        "experiment of your own group for your runs"
    )


def _deleted(project: Project) -> bool:
    return project.lifecycle_stage == DELETED


class MlflowHandler(BaseHandler):
    """``/api/2.0/mlflow/<resource>/<action>``: one handler, dispatched by endpoint."""

    # endpoint -> (method name, readable with GET)
    ENDPOINTS: dict[str, tuple[str, bool]] = {
        "experiments/create": ("create_experiment", False),
        "experiments/get": ("get_experiment", True),
        "experiments/get-by-name": ("get_experiment_by_name", True),
        "experiments/search": ("search_experiments", True),
        "experiments/update": ("update_experiment", False),
        "experiments/delete": ("delete_experiment", False),
        "experiments/restore": ("restore_experiment", False),
        "experiments/set-experiment-tag": ("set_experiment_tag", False),
        "experiments/delete-experiment-tag": ("delete_experiment_tag", False),
        "runs/create": ("create_run", False),
        "runs/get": ("get_run", True),
        "runs/update": ("update_run", False),
        "runs/delete": ("delete_run", False),
        "runs/restore": ("restore_run", False),
        "runs/search": ("search_runs", True),
        "runs/log-metric": ("log_metric", False),
        "runs/log-parameter": ("log_param", False),
        "runs/log-batch": ("log_batch", False),
        "runs/set-tag": ("set_tag", False),
        "runs/delete-tag": ("delete_tag", False),
        "metrics/get-history": ("get_metric_history", True),
        "logged-models/search": ("search_logged_models", False),
    }

    def get(self, endpoint: str) -> None:
        """Read endpoints, fields from the query string."""
        self._dispatch(endpoint, "GET")

    def post(self, endpoint: str) -> None:
        """Every endpoint, fields from the JSON body."""
        self._dispatch(endpoint, "POST")

    def _dispatch(self, endpoint: str, method: str) -> None:
        entry = self.ENDPOINTS.get(endpoint)
        if entry is None:
            raise MlflowError(
                f"Endpoint {PREFIX}{endpoint} is not implemented by latticehub's MLflow API "
                f"(supported: {', '.join(sorted(self.ENDPOINTS))})",
                "ENDPOINT_NOT_FOUND",
                404,
            )
        name, readable = entry
        if method == "GET" and not readable:
            raise MlflowError(f"Use POST for {PREFIX}{endpoint}", "BAD_REQUEST", 405)
        action: Callable[[Fields], dict[str, Any]] = getattr(self, f"_{name}")
        self._viewer()  # authenticate first: a caller without a token learns nothing
        try:
            result = action(Fields(self._request_data(method)))
        except TrackingError as e:
            if e.code == RESOURCE_LIMIT_EXCEEDED:  # MLflow reports batch limits this way
                raise invalid(e.message) from None
            raise
        self.write_json(result)

    def _request_data(self, method: str) -> dict[str, Any]:
        if method == "GET" and self.request.query_arguments:
            data: dict[str, Any] = {}
            for name, raw in self.request.query_arguments.items():
                values = [v.decode("utf-8", "replace") for v in raw]
                data[name] = values if name in _REPEATED or len(values) > 1 else values[0]
            return data
        return self.json_body()

    # -- lookups with access checks ------------------------------------------------------
    def _viewer(self) -> Viewer:
        return self.viewer  # computed once per request by the base handler

    def _project(self, experiment_id: str) -> Project:
        """A project the caller may read; 404 otherwise."""
        project = self.store.get_project(_experiment_number(experiment_id))
        require_read(self._viewer(), project, f"Experiment with id '{experiment_id}'")
        return project

    def _managed_project(self, fields: Fields, action: str) -> Project:
        """A project the caller manages (owner, group manager, admin); 404 if unseen, else 403."""
        project = self._project(fields.string("experiment_id", required=True))
        managers = f", managers of group {project.group}" if project.group else ""
        require(
            can_manage_project(self._viewer(), project, group_rights(self.current_user)),
            f"Permission denied: only the owner of experiment {project.id} "
            f"({project.owner}, while a member of its group){managers} or an admin may "
            f"{action} it",
        )
        return project

    def _run(self, fields: Fields, *, data: bool = True) -> tuple[Run, Project]:
        """A run (``run_id`` or ``run_uuid``) whose project the caller may read, and that.

        ``data=False``: without params, tags and metrics (a write does not need them).
        """
        run_id = fields.string("run_id") or fields.string("run_uuid")
        if not run_id:
            fields.string("run_id", required=True)
        try:
            check_run_id(run_id)
        except TrackingError:  # MLflow: no such run (404), not a bad value (400)
            raise not_found(f"Run with id={run_id}") from None
        run, project = self.store.get_run_and_project(run_id, data=data)
        require_read(self._viewer(), project, f"Run with id={run_id}")
        return run, project

    def _writable_run(self, fields: Fields, *, active: bool = True, data: bool = True) -> Run:
        """A run the caller may write; with ``active``, it and its experiment are active."""
        run, project = self._run(fields, data=data)
        self.touched_run = run.id
        require(
            can_write_run(self._viewer(), run),
            f"Permission denied: run {run.id} belongs to {run.user}; only its owner (or an "
            "admin) may change it",
        )
        if active and (run.lifecycle_stage != ACTIVE or _deleted(project)):
            raise TrackingError(
                f"The run {run.id} must be in the 'active' state. Current state is deleted.",
                INVALID_STATE,
            )
        return run

    def _visible_projects(self) -> list[Project]:
        """Every project the caller may read, deleted ones included."""
        ids = visible_project_ids(self.store, self._viewer())
        projects: list[Project] = []
        token = None
        while True:
            page = self.store.search_projects(
                ids=ids, include_deleted=True, page_token=token, max_results=MAX_PAGE_SIZE
            )
            projects += page.items
            token = page.next_token
            if token is None:
                return projects

    # -- experiments ------------------------------------------------------------------------
    def _create_experiment(self, f: Fields) -> dict[str, Any]:
        viewer = self._viewer()
        require(viewer.run_id is None, "job tokens cannot create experiments")
        name = f.string("name", required=True)
        if f.string("artifact_location"):
            raise invalid(
                "artifact_location cannot be chosen: latticehub keeps artifacts under "
                "mlflow-artifacts:/<experiment_id>; leave it empty"
            )
        tags = dict(f.key_values("tags"))
        group = tags.pop(GROUP_TAG, "") or None
        reserved = sorted(k for k in tags if k.startswith(RESERVED_TAG_PREFIX))
        if reserved:
            raise invalid(f"Tag(s) {', '.join(reserved)} are set by latticehub, not by clients")
        if group is not None and group not in viewer.groups and not viewer.admin:
            raise invalid(
                f"{GROUP_TAG}={group!r}: you are not a member of that group; use one of your "
                f"groups ({', '.join(sorted(viewer.groups)) or 'none'}) or leave the tag out "
                "for a private experiment"
            )
        for key, value in tags.items():
            check_tag(Tag(key, value))
        project = self.store.create_project(name, owner=viewer.name, group=group, tags=tags)
        return {"experiment_id": str(project.id)}

    def _get_experiment(self, f: Fields) -> dict[str, Any]:
        project = self._project(f.string("experiment_id", required=True))
        return {"experiment": experiment_json(project)}

    def _get_experiment_by_name(self, f: Fields) -> dict[str, Any]:
        name = f.string("experiment_name", required=True)
        project = find_project_by_name(self.store, self._viewer(), name)
        if project is None:
            raise TrackingError(
                f"Could not find experiment with name '{name}'", RESOURCE_DOES_NOT_EXIST
            )
        return {"experiment": experiment_json(project)}

    def _search_experiments(self, f: Fields) -> dict[str, Any]:
        view = view_type(f.data.get("view_type"))
        size = self._max_results(f)
        offset = decode_token(f.string("page_token") or None)
        chosen = select_experiments(
            self._visible_projects(),
            view=view,
            filter_text=f.string("filter"),
            order_by=self._strings(f, "order_by"),
        )
        response: dict[str, Any] = {
            "experiments": [experiment_json(p) for p in chosen[offset : offset + size]]
        }
        if offset + size < len(chosen):
            response["next_page_token"] = encode_token(offset + size)
        return response

    def _update_experiment(self, f: Fields) -> dict[str, Any]:
        project = self._managed_project(f, "rename")
        self.store.update_project(project.id, name=f.string("new_name", required=True))
        return {}

    def _delete_experiment(self, f: Fields) -> dict[str, Any]:
        project = self._managed_project(f, "delete")
        self.store.update_project(project.id, lifecycle_stage=DELETED)
        return {}

    def _restore_experiment(self, f: Fields) -> dict[str, Any]:
        project = self._managed_project(f, "restore")
        self.store.update_project(project.id, lifecycle_stage=ACTIVE)
        return {}

    def _set_experiment_tag(self, f: Fields) -> dict[str, Any]:
        project = self._managed_project(f, "tag")
        tag = Tag(f.string("key", required=True), f.string("value"))
        if tag.key.startswith(RESERVED_TAG_PREFIX):
            raise invalid(f"Tag {tag.key} is set by latticehub, not by clients")
        self.store.set_project_tag(project.id, check_tag(tag))
        return {}

    def _delete_experiment_tag(self, f: Fields) -> dict[str, Any]:
        project = self._managed_project(f, "tag")
        key = f.string("key", required=True)
        if key.startswith(RESERVED_TAG_PREFIX):
            raise invalid(f"Tag {key} is set by latticehub, not by clients")
        self.store.delete_project_tag(project.id, key)
        return {}

    # -- runs ------------------------------------------------------------------------------
    def _create_run(self, f: Fields) -> dict[str, Any]:
        viewer = self._viewer()
        project = self._project(f.string("experiment_id", required=True))
        require(can_write_project(viewer, project), _write_refusal(viewer, project))
        tags = dict(f.key_values("tags"))
        tags[USER_TAG] = viewer.name  # the authenticated user, not the client's OS account
        run = self.store.create_run(
            project.id,
            user=viewer.name,
            name=f.string("run_name"),
            start_time=f.integer("start_time"),
            status=RunStatus.RUNNING,
            tags=[Tag(k, v) for k, v in tags.items()],
        )
        return {"run": run_json(run)}

    def _get_run(self, f: Fields) -> dict[str, Any]:
        run, project = self._run(f)
        return {"run": run_json(run, experiment_deleted=_deleted(project))}

    def _update_run(self, f: Fields) -> dict[str, Any]:
        run = self._writable_run(f)
        changes: dict[str, Any] = {}
        if f.has("status"):
            changes["status"] = run_status(f.data["status"])
        if f.has("end_time"):
            changes["end_time"] = f.integer("end_time")
        if f.string("run_name"):
            changes["name"] = f.string("run_name")
        updated = self.store.update_run(run.id, **changes) if changes else run
        return {"run_info": run_info_json(updated)}

    def _delete_run(self, f: Fields) -> dict[str, Any]:
        run = self._writable_run(f, active=False)
        self.store.update_run(run.id, lifecycle_stage=DELETED)
        return {}

    def _restore_run(self, f: Fields) -> dict[str, Any]:
        run = self._writable_run(f, active=False)
        self.store.update_run(run.id, lifecycle_stage=ACTIVE)
        return {}

    def _search_logged_models(self, f: Fields) -> dict[str, Any]:
        """MLflow 3's logged models: latticehub has none yet (``log_model`` is not supported).

        The pinned client searches them before it lists or downloads a run's artifacts; the
        experiments asked for are checked as a run search checks them.
        """
        for raw in self._strings(f, "experiment_ids"):
            if not raw.isdigit():
                raise invalid(f"Invalid experiment ID: '{raw}'. Experiment IDs are integers.")
        return {"models": []}

    def _search_runs(self, f: Fields) -> dict[str, Any]:
        viewer = self._viewer()
        projects: dict[int, Project] = {}
        for raw in self._strings(f, "experiment_ids"):
            if not raw.isdigit():
                raise invalid(f"Invalid experiment ID: '{raw}'. Experiment IDs are integers.")
            try:
                project = self.store.get_project(int(raw))
            except TrackingError as e:
                if e.code == RESOURCE_DOES_NOT_EXIST:
                    continue  # as in MLflow: unknown experiments have no runs
                raise
            if can_read_project(viewer, project):
                projects[project.id] = project
        view = view_type(f.data.get("run_view_type"), "run_view_type")
        try:
            filters = [status_comparison(c) for c in parse_filter(f.string("filter") or None)]
            order_by = parse_order_by(self._strings(f, "order_by"))
        except SearchError as e:
            raise invalid(str(e)) from None
        size = self._max_results(f)
        token = f.string("page_token") or None
        if view == "ACTIVE_ONLY":
            live = [i for i, p in projects.items() if not _deleted(p)]
            page = self.store.search_runs(
                project_ids=live,
                filters=filters,
                order_by=order_by,
                page_token=token,
                max_results=size,
            )
            runs, next_token = page.items, page.next_token
        else:

            def keep(run: Run) -> bool:
                return view == "ALL" or (
                    run.lifecycle_stage == DELETED or _deleted(projects[run.project_id])
                )

            runs, next_token = self._scan_runs(
                list(projects), filters, order_by, decode_token(token), size, keep
            )
        response: dict[str, Any] = {
            "runs": [run_json(r, experiment_deleted=_deleted(projects[r.project_id])) for r in runs]
        }
        if next_token:
            response["next_page_token"] = next_token
        return response

    def _scan_runs(
        self,
        project_ids: list[int],
        filters: list[Any],
        order_by: list[Any],
        offset: int,
        size: int,
        keep: Callable[[Run], bool],
    ) -> tuple[list[Run], str | None]:
        """Runs (deleted ones included) that ``keep`` accepts, paged by store offset."""
        chosen: list[Run] = []
        position = offset
        while True:
            page = self.store.search_runs(
                project_ids=project_ids,
                filters=filters,
                order_by=order_by,
                include_deleted=True,
                page_token=encode_token(position),
                max_results=_SCAN_CHUNK,
            )
            for i, run in enumerate(page.items):
                if not keep(run):
                    continue
                chosen.append(run)
                if len(chosen) == size:
                    more = i + 1 < len(page.items) or page.next_token is not None
                    return chosen, encode_token(position + i + 1) if more else None
            if page.next_token is None:
                return chosen, None
            position += len(page.items)

    # -- run data ---------------------------------------------------------------------------
    def _log_metric(self, f: Fields) -> dict[str, Any]:
        run = self._writable_run(f, data=False)
        point = self._metric(f)
        self.store.log_batch(run.id, metrics=[point])
        self.publish_metrics(run.id, [point])
        self.touched_run = None  # publishing woke the readers (and told other replicas)
        return {}

    def _log_param(self, f: Fields) -> dict[str, Any]:
        run = self._writable_run(f, data=False)
        self.store.log_batch(
            run.id, params=[Param(f.string("key", required=True), f.string("value"))]
        )
        return {}

    def _log_batch(self, f: Fields) -> dict[str, Any]:
        size = len(self.request.body)
        if size > MAX_BATCH_REQUEST_BYTES:
            raise invalid(
                f"Batched logging API requests must be at most {MAX_BATCH_REQUEST_BYTES} "
                f"bytes, got a request of size {size}."
            )
        run = self._writable_run(f, data=False)
        columns = plain_metrics(f.items("metrics"))
        metrics: list[Metric] = []
        if columns is None:  # something unusual: the field-by-field checks name it
            columns, metrics = [], [self._metric(entry) for entry in f.entries("metrics")]
        params = [Param(k, v) for k, v in f.key_values("params")]
        tags = [Tag(k, v) for k, v in f.key_values("tags")]
        self.store.log_batch(run.id, metrics=metrics, params=params, tags=tags, columns=columns)
        if metrics:
            self.publish_metrics(run.id, metrics)
        else:
            self.publish_columns(run.id, columns)
        if params or tags:
            self.touched_topics = ("run",)
        elif metrics or columns:
            self.touched_run = None  # publishing woke the readers (and told other replicas)
        self._rename_from_tags(run, tags)
        return {}

    def _set_tag(self, f: Fields) -> dict[str, Any]:
        run = self._writable_run(f, data=False)
        tag = Tag(f.string("key", required=True), f.string("value"))
        self.store.log_batch(run.id, tags=[tag])
        self._rename_from_tags(run, [tag])
        return {}

    def _delete_tag(self, f: Fields) -> dict[str, Any]:
        run = self._writable_run(f, data=False)
        self.store.delete_tag(run.id, f.string("key", required=True))
        return {}

    def _get_metric_history(self, f: Fields) -> dict[str, Any]:
        run, _ = self._run(f)
        key = f.string("metric_key", required=True)
        size = f.integer("max_results")
        if size is not None and size <= 0:
            raise invalid(
                f"Invalid value {size} for parameter 'max_results' supplied. It must be a "
                "positive integer."
            )
        offset = decode_token(f.string("page_token") or None)
        # one page at most, also without max_results (MLflow would send every point): larger
        # sizes are clamped, and next_page_token, which the mlflow client follows, says more
        size = min(size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
        points = self.store.get_metric_history(run.id, key, offset=offset, limit=size + 1)
        response: dict[str, Any] = {"metrics": [metric_json(m) for m in points[:size]]}
        if len(points) > size:
            response["next_page_token"] = encode_token(offset + size)
        return response

    # -- helpers ---------------------------------------------------------------------------
    def _metric(self, f: Fields) -> Metric:
        return Metric(
            key=f.string("key", required=True),
            value=f.number("value", required=True),  # type: ignore[arg-type] # required
            timestamp=f.integer("timestamp", required=True),
            step=f.integer("step", default=0),
        )

    def _rename_from_tags(self, run: Run, tags: list[Tag]) -> None:
        """Setting ``mlflow.runName`` renames the run, as in MLflow."""
        names = [t.value for t in tags if t.key == RUN_NAME_TAG and t.value.strip()]
        if names and names[-1] != run.name:
            self.store.update_run(run.id, name=names[-1])

    @staticmethod
    def _strings(f: Fields, name: str) -> list[str]:
        items = f.items(name)
        for item in items:
            if not isinstance(item, str):
                raise invalid(f"Invalid value {item!r} for parameter '{name}': expected strings")
        return items

    @staticmethod
    def _max_results(f: Fields) -> int:
        size = f.integer("max_results", default=DEFAULT_MAX_RESULTS)
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise invalid(
                f"Invalid value {size} for parameter 'max_results' supplied. It must be at "
                f"most {MAX_PAGE_SIZE}, and at least 1."
            )
        return size


default_handlers = [(r"/api/2\.0/mlflow/(.*)", MlflowHandler)]
