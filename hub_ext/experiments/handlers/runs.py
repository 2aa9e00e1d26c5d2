"""Runs: search, create, get, change, log batches, metric history, logs."""

from __future__ import annotations

import math
from typing import Any

from ..access import (
    can_write_project,
    find_project_by_name,
    require,
    require_read,
    visible_project_ids,
)
from ..heartbeats import late_heartbeat_message
from ..search import SearchError, parse_filter, parse_order_by
from ..serialize import log_line, metric, run
from ..store.abstract import MAX_PAGE_SIZE, now_ms
from ..store.entities import Metric, Param, Project, RunStatus, Tag
from ..store.errors import BAD_REQUEST, CONFLICT, TrackingError, invalid
from .base import MAX_INT, BaseHandler
from .schemas import INT64, KEY, OBJ, PAGING, STATES, STR_MAP, PathItems, Query, obj, operation, ref


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise invalid(f"{what} must be finite")
    return float(value)


def _int(value: Any, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{what} must be an integer, got {value!r}")
    if not -MAX_INT - 1 <= value <= MAX_INT:
        raise invalid(f"{what} must be a 64-bit integer, got {value}")
    return value


def parse_batch(body: dict) -> tuple[list[Metric], list[Param], list[Tag]]:
    """``{"metrics": [{key, value, step?, timestamp?}], "params": {k: v}, "tags": {k: v}}``."""
    unknown = set(body) - {"metrics", "params", "tags"}
    if unknown:
        raise TrackingError(f"unknown field(s): {', '.join(sorted(unknown))}", BAD_REQUEST)
    stamp = now_ms()
    metrics = []
    for item in body.get("metrics") or []:
        if not isinstance(item, dict):
            raise invalid("each metric must be an object {key, value, step, timestamp}")
        metrics.append(
            Metric(
                key=item.get("key"),  # type: ignore[arg-type] # the store checks it: a 400
                value=_number(item.get("value"), f"metric {item.get('key')!r} value"),
                timestamp=_int(item.get("timestamp"), "timestamp", stamp),
                step=_int(item.get("step"), "step", 0),
            )
        )
    params, tags = body.get("params") or {}, body.get("tags") or {}
    if not isinstance(params, dict) or not isinstance(tags, dict):
        raise invalid("params and tags must be objects of key -> string value")
    return (
        metrics,
        [Param(k, v if isinstance(v, str) else _param_text(k, v)) for k, v in params.items()],
        [Tag(k, v) for k, v in tags.items()],
    )


def terminal_text(line: str) -> str:
    r"""What a terminal shows for a line rewritten with carriage returns.

    >>> terminal_text("10%|#  |\r50%|## |\r100%|###|")
    '100%|###|'
    """
    if "\r" not in line:
        return line
    shown = [part for part in line.split("\r") if part]
    return shown[-1] if shown else ""


def _param_text(key: str, value: Any) -> str:
    if isinstance(value, bool | int | float) and not (
        isinstance(value, float) and not math.isfinite(value)
    ):
        return str(value)
    raise invalid(f"param {key!r} must be a string or a number, got {value!r}")


def search_args(handler: BaseHandler) -> tuple[list[int] | None, list[Any], list[Any]]:
    """A run search's ``project`` ids (those the caller may read), ``filter`` and ``order_by``.

    Shared by the run search and the run table. Raises 400 for a project that is not an id
    or a filter or ordering that does not parse.
    """
    visible = visible_project_ids(handler.store, handler.viewer)  # a job token: its project
    wanted = handler.get_arguments("project")
    ids: list[int] | None
    if wanted:
        try:
            ids = [int(p) for p in wanted]
        except ValueError:
            raise invalid("project must be a project id") from None
        if visible is not None:
            allowed = set(visible)
            ids = [i for i in ids if i in allowed]
    else:
        ids = visible
    try:
        filters = parse_filter(handler.get_argument("filter", None))
        order_by = parse_order_by(handler.get_arguments("order_by"))
    except SearchError as e:
        raise invalid(str(e)) from None
    return ids, list(filters), list(order_by)


class RunListHandler(BaseHandler):
    """``/api/v1/runs``."""

    def get(self) -> None:
        """Search runs: ``project``, ``filter``, ``order_by`` (repeatable), paging."""
        ids, filters, order_by = search_args(self)
        token, size = self.page_args()
        page = self.store.search_runs(
            project_ids=ids, filters=filters, order_by=order_by, page_token=token,
            max_results=size,
        )  # fmt: skip
        self.write_json(
            {"items": [run(r) for r in page.items], "_pagination": {"next_token": page.next_token}}
        )

    def post(self) -> None:
        """Create ``{"project": id or name, "name"?, "params"?, "tags"?, "status"?}``."""
        viewer = self.viewer
        body = self.json_body()
        unknown = set(body) - {"project", "name", "params", "tags", "status", "start_time"}
        if unknown:
            raise TrackingError(f"unknown field(s): {', '.join(sorted(unknown))}", BAD_REQUEST)
        ref = body.get("project")
        project: Project | None
        if isinstance(ref, int) and not isinstance(ref, bool):
            project = self.store.get_project(ref)
        elif isinstance(ref, str) and ref:
            # among the projects the caller may read: a name says nothing of other groups
            project = find_project_by_name(self.store, viewer, ref)
            if project is None:
                raise TrackingError(f"Experiment '{ref}' does not exist", "RESOURCE_DOES_NOT_EXIST")
        else:
            raise invalid("project (an id or a name) is required")
        require_read(viewer, project, f"Experiment '{ref}'")
        require(
            can_write_project(viewer, project),
            "job tokens cannot create runs"
            if viewer.run_id is not None
            else f"you may read but not add runs to project {project.name!r}: runs are created "
            f"by members of its group ({project.group or 'private'})",
        )
        status = body.get("status", "RUNNING")
        if status not in (RunStatus.QUEUED, RunStatus.RUNNING):
            raise invalid("a new run's status is QUEUED or RUNNING")
        _, params, tags = parse_batch({"params": body.get("params"), "tags": body.get("tags")})
        created = self.store.create_run(
            project.id, user=viewer.name, name=str(body.get("name") or ""),
            status=RunStatus(status), tags=tags,
            start_time=_int(body.get("start_time"), "start_time", now_ms()),
        )  # fmt: skip
        if params:
            self.store.log_batch(created.id, params=params)
            created = self.store.get_run(created.id)
        self.write_json(run(created), 201)


class RunHandler(BaseHandler):
    """``/api/v1/runs/{id}``."""

    def get(self, run_id: str) -> None:
        """One run."""
        self.write_json(run(self.find_run(run_id)))

    def patch(self, run_id: str) -> None:
        """Change ``status``, ``end_time``, ``name``, ``code``, ``environment``, ``failure``."""
        current = self.writable_run(run_id)
        self.touched_topics = ("run",)
        body = self.json_body()
        allowed = {
            "status", "end_time", "name", "code", "environment", "failure", "status_reason",
            "heartbeat",
        }  # fmt: skip
        unknown = set(body) - allowed
        if unknown:
            raise TrackingError(f"unknown field(s): {', '.join(sorted(unknown))}", BAD_REQUEST)
        for key in ("code", "environment", "failure"):
            if key in body and not isinstance(body[key], dict):
                raise invalid(f"{key} must be an object")
        for key in ("end_time", "heartbeat"):
            if key in body:
                _int(body[key], key, 0)
        if not isinstance(body.get("status_reason", ""), str):
            raise invalid("status_reason must be a string")
        if current.status == RunStatus.LOST:
            self.touched_topics = ("run", "timeline")
            body = self._patch_lost(current, body)
        self.write_json(run(self.store.update_run(run_id, **body)))

    def _patch_lost(self, current: Any, body: dict) -> dict:
        """Rules for a run marked LOST.

        A late heartbeat is recorded on the timeline and does not revive the run; the
        process may still report a final status, which is recorded too.
        """
        events = self.settings.get("events")
        status = body.get("status")
        if status in (RunStatus.QUEUED.value, RunStatus.RUNNING.value):
            raise TrackingError(
                f"run {current.id} was marked LOST ({current.status_reason}); it cannot become "
                f"{status} again: start a new run (or resubmit its job)",
                CONFLICT,
            )
        if "heartbeat" in body and events is not None:
            events.add_event(
                current.id, "late_heartbeat", late_heartbeat_message(current, body["heartbeat"])
            )
        if status is not None:
            note = f"the process reported {status} after the run was marked LOST"
            if events is not None:
                events.add_event(current.id, "reported", note)
            body.setdefault("status_reason", f"{note} ({current.status_reason})")
            if status == RunStatus.FINISHED.value:
                body.setdefault("failure", {})
        return body


class BatchHandler(BaseHandler):
    """``/api/v1/runs/{id}/batch``: metrics, params and tags in one write."""

    def post(self, run_id: str) -> None:
        """Log a batch (retry-safe)."""
        self.writable_run(run_id, data=False)
        metrics, params, tags = parse_batch(self.json_body())
        self.store.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        self.publish_metrics(run_id, metrics)
        if params or tags:
            self.touched_topics = ("run",)
        else:
            self.touched_run = None  # publish_metrics woke the readers already
        self.write_json({})


class MetricHistoryHandler(BaseHandler):
    """``/api/v1/runs/{id}/metrics/{key}``."""

    def get(self, run_id: str, key: str) -> None:
        """A metric's history, paged by ``offset``/``limit`` (at most ``MAX_PAGE_SIZE``)."""
        self.find_run(run_id)
        offset = self.int_argument("offset", 0)
        limit = self.int_argument(
            "limit",
            MAX_PAGE_SIZE,
            maximum=MAX_PAGE_SIZE,
            hint=f"read the history in pages of {MAX_PAGE_SIZE} points with offset",
        )
        points = self.store.get_metric_history(run_id, key, offset=offset, limit=limit)
        self.write_json({"items": [metric(m) for m in points]})


class LogHandler(BaseHandler):
    """``/api/v1/runs/{id}/logs/{stdout|stderr}``."""

    def get(self, run_id: str, stream: str) -> None:
        """Lines from ``offset``, at most ``limit``; ``next_offset`` to continue."""
        self.find_run(run_id)
        offset = self.int_argument("offset", 0)
        limit = min(self.int_argument("limit", 1000), 10_000)
        lines = self.store.read_logs(run_id, stream, offset=offset, limit=limit)
        nxt = lines[-1].offset + 1 if lines else offset
        self.write_json({"items": [log_line(x) for x in lines], "next_offset": nxt})

    def post(self, run_id: str, stream: str) -> None:
        r"""Append ``{"offset", "lines", "partial"?}``; idempotent on retry.

        A line holding carriage returns (a progress bar that rewrote itself) is stored as
        what a terminal finally shows: the text after the last ``\r``. ``partial`` is the
        stream's unfinished last line, shown live and replaced by the next one (not stored).
        """
        self.writable_run(run_id, data=False)
        body = self.json_body()
        unknown = set(body) - {"offset", "lines", "partial"}
        if unknown:
            raise TrackingError(f"unknown field(s): {', '.join(sorted(unknown))}", BAD_REQUEST)
        lines = body.get("lines")
        if not isinstance(lines, list):
            raise invalid("lines must be a list of strings")
        lines = [terminal_text(x) if isinstance(x, str) else x for x in lines]
        partial = body.get("partial")
        if partial is not None and not isinstance(partial, str):
            raise invalid("partial must be a string: the stream's unfinished last line")
        offset = body.get("offset")  # the store checks it (a 400 naming the fix)
        nxt = self.store.append_logs(run_id, stream, offset, lines, now_ms())  # type: ignore[arg-type]
        self.touched_topics = (stream,)
        bus = self.settings.get("live")
        if bus is not None and (partial is not None or lines):
            bus.set_partial(run_id, stream, partial or "")
        self.write_json({"next_offset": nxt})


default_handlers = [
    (r"/api/v1/runs", RunListHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)", RunHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)/batch", BatchHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)/metrics/(.+)", MetricHistoryHandler),
    (r"/api/v1/runs/([0-9a-zA-Z]+)/logs/([a-z]+)", LogHandler),
]

_METRIC_IN = obj(
    {
        "key": KEY,
        "value": {"type": "number"},
        "step": {**INT64, "default": 0},
        "timestamp": {**INT64, "description": "ms since the epoch (default: now)"},
    },
    ("key", "value"),
)
_PARAMS_IN = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
    "description": "write-once; numbers are stored as their text",
}
_OFFSET = {"type": "integer", "minimum": 0}

#: OpenAPI path items of this module's routes, assembled by :mod:`.openapi`.
openapi_paths: PathItems = {
    "/api/v1/runs": {
        "get": operation(
            "Search runs",
            query=(
                Query("project", "integer", "project id (repeatable)"),
                Query(
                    "filter", "string", "MLflow filter, e.g. metrics.loss < 0.5 and params.L = '8'"
                ),
                Query("order_by", "string", "e.g. metrics.loss DESC (repeatable)"),
                *PAGING,
            ),  # fmt: skip
            returns=ref("RunPage"),
        ),
        "post": operation(
            "Create a run",
            ok=201,
            returns=ref("Run"),
            body=obj(
                {
                    "project": {"type": ["integer", "string"], "description": "id or name"},
                    "name": {"type": "string"},
                    "params": {**_PARAMS_IN, "type": ["object", "null"]},
                    "tags": {**STR_MAP, "type": ["object", "null"]},
                    "status": {"enum": ["QUEUED", "RUNNING"], "default": "RUNNING"},
                    "start_time": {
                        **INT64,
                        "type": ["integer", "null"],
                        "description": "ms since the epoch (default: now)",
                    },
                },
                ("project",),
            ),
        ),
    },
    "/api/v1/runs/{run_id}": {
        "get": operation(
            "One run with params, tags, latest metrics and records", returns=ref("Run")
        ),
        "patch": operation(
            "Change status, end_time, heartbeat, name, code, environment, failure (409: a "
            "LOST run cannot become QUEUED or RUNNING again)",
            returns=ref("Run"),
            errors=(409,),
            body=obj(
                {
                    "status": {"enum": STATES},
                    "status_reason": {"type": "string"},
                    "end_time": INT64,
                    "heartbeat": INT64,
                    "name": {"type": "string", "minLength": 1, "maxLength": 500},
                    "code": OBJ,
                    "environment": OBJ,
                    "failure": OBJ,
                }
            ),
        ),
    },
    "/api/v1/runs/{run_id}/batch": {
        "post": operation(
            "Log metrics, params (write-once) and tags; retry-safe",
            returns=obj({}),
            body=obj(
                {
                    "metrics": {"type": "array", "items": _METRIC_IN, "maxItems": 1000},
                    "params": _PARAMS_IN,
                    "tags": STR_MAP,
                }
            ),
        ),
    },
    "/api/v1/runs/{run_id}/metrics/{key}": {
        "get": operation(
            "A metric's history, by step",
            query=(
                Query("offset", _OFFSET, "first point (default 0)"),
                Query("limit", _OFFSET, "points, at most 50000 (default 50000; page with offset)"),
            ),
            returns=ref("MetricHistory"),
        )
    },
    "/api/v1/runs/{run_id}/logs/{stream}": {
        "get": operation(
            "Log lines (stream: stdout or stderr); next_offset to continue",
            query=(
                Query("offset", _OFFSET, "first line (default 0)"),
                Query("limit", _OFFSET, "lines, at most 10000 (default 1000)"),
            ),
            returns=ref("LogPage"),
        ),
        "post": operation(
            "Append lines at offset; idempotent on retry (a gap is refused). A line with "
            "carriage returns is stored as what a terminal shows; partial is the unfinished "
            "last line, shown live and not stored",
            returns=obj({"next_offset": _OFFSET}, ("next_offset",)),
            body=obj(
                {
                    "offset": {**INT64, "minimum": 0},
                    "lines": {"type": "array", "items": {"type": "string"}, "maxItems": 10000},
                    "partial": {"type": ["string", "null"]},
                },
                ("offset", "lines"),
            ),
        ),
    },
}
