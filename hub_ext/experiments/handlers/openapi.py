"""The OpenAPI 3.1 document of the native API, served at ``/api/v1/openapi.json``.

Paths of projects, runs, logs, artifacts and jobs are declared here; live streams and the
registry declare theirs beside their handlers (``openapi_paths``) and :func:`all_paths`
merges them, declaring every path parameter that a path item leaves undeclared.
``tests/unit/test_openapi.py`` checks that every route and method is documented, and
``tests/service/test_openapi_fuzz.py`` fuzzes the service from this document.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tornado import web

ERROR = {"$ref": "#/components/schemas/Error"}
ERR = {"application/json": {"schema": ERROR}}

#: Error responses, by status: when each can happen.
ERRORS = {
    400: "Bad input: a malformed or invalid value, an unknown field",
    401: "No token, or an unknown, expired or revoked one",
    403: "Not allowed: read-only access, or a job token outside its run",
    404: "Unknown, or not visible to the caller (existence is not shown)",
    409: "Conflicts with the current state",
    413: "Request body over the size limit",
    429: "A limit is reached: the group's (or user's) job limit, or the user's open live streams",
    503: "Jobs are not enabled on this service, or the executor is unavailable",
}
#: What every authenticated operation may answer.
BASE_ERRORS = (400, 401, 403, 404)


def ref(name: str) -> dict[str, str]:
    """A reference to ``components/schemas/<name>``."""
    return {"$ref": f"#/components/schemas/{name}"}


def _op(
    summary: str,
    *,
    body: dict | None = None,
    ok: int = 200,
    query: tuple = (),
    returns: dict | None = None,
    media: str = "application/json",
    errors: tuple[int, ...] = (),
) -> dict:
    """An operation: ``ok`` answers ``returns`` (a schema), errors answer ``Error``.

    Args:
        summary: one line on what it does.
        body: the JSON schema of the request body (required if given).
        ok: the success status.
        query: ``(name, type or schema, description)`` of optional query parameters.
        returns: the schema of the success response (None: no body described).
        media: the success response's media type.
        errors: statuses beyond 400, 401, 403 and 404 (413 is added for bodies).
    """
    response: dict[str, Any] = {"description": "OK" if ok != 204 else "Done (no content)"}
    if returns is not None:
        response["content"] = {media: {"schema": returns}}
    codes = sorted({*BASE_ERRORS, *errors, *((413,) if body is not None else ())})
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(ok): response,
            **{str(code): {"description": ERRORS[code], "content": ERR} for code in codes},
        },
    }
    if body is not None:
        # a body without required fields may be left out (it is then taken as {})
        op["requestBody"] = {
            "required": bool(body.get("required")),
            "content": {"application/json": {"schema": body}},
        }
    if query:
        op["parameters"] = [
            {"name": name, "in": "query", "required": False, "description": text,
             "schema": {"type": kind} if isinstance(kind, str) else kind}
            for name, kind, text in query
        ]  # fmt: skip
    return op


def _obj(properties: dict, required: tuple = (), *, closed: bool = True) -> dict:
    """An object schema; ``closed`` refuses unknown fields (``additionalProperties: false``)."""
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def _items(item: dict, **extra: dict) -> dict:
    """``{"items": [item], **extra}``."""
    return _obj({"items": {"type": "array", "items": item}, **extra}, ("items", *extra))


PAGING = (
    ("page_token", "string", "next_token of the previous page"),
    ("max_results", {"type": "integer", "minimum": 1, "maximum": 50000},
     "page size, 1..50000 (default 100)"),
)  # fmt: skip
OBJ = {"type": "object"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
MS = {"type": "integer", "description": "ms since the epoch"}
MS_OR_NULL = {"type": ["integer", "null"], "description": "ms since the epoch"}
INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
STATES = ["QUEUED", "RUNNING", "FINISHED", "FAILED", "KILLED", "LOST"]
#: Metric, param and tag keys (the store's rule, which also forbids ``..`` and a leading /).
KEY = {"type": "string", "pattern": "^[A-Za-z0-9_. /-]{1,250}$"}
NEXT_TOKEN = _obj({"next_token": {"type": ["string", "null"]}}, ("next_token",))

#: Path parameters: their schemas (the route's own pattern, or what the store accepts).
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "project_id": {"type": "integer", "minimum": 1, "description": "a project id"},
    "run_id": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "a run id"},
    "job_id": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "a job id"},
    "key": {"type": "string", "minLength": 1, "description": "a metric key"},
    "stream": {"enum": ["stdout", "stderr"]},
    "path": {"type": "string", "minLength": 1, "description": "an artifact path, e.g. a/b.pt"},
    "group": {"type": "string", "minLength": 1, "description": "a Hub group"},
    "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,250}$",
             "description": "an artifact name"},
    "ref": {"type": "string", "minLength": 1, "description": "v3, 3, latest or an alias"},
    "alias": {"type": "string", "minLength": 1, "description": "an alias, e.g. best"},
}  # fmt: skip

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj(
        {
            "error_code": {"type": "string", "description": "MLflow's, e.g. INVALID_STATE"},
            "message": {"type": "string", "description": "what went wrong, and the fix"},
            "status": {"type": "integer", "description": "the HTTP status"},
        },
        ("error_code", "message", "status"),
    ),
    "Project": _obj(
        {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "owner": {"type": "string"},
            "group": {"type": ["string", "null"], "description": "null: private to the owner"},
            "shared_with": {"type": "array", "items": {"type": "string"}},
            "artifact_location": {"type": "string"},
            "lifecycle_stage": {"enum": ["active", "deleted"]},
            "creation_time": MS,
            "last_update_time": MS,
            "description": {"type": "string"},
            "tags": STR_MAP,
        },
        (
            "id",
            "name",
            "owner",
            "group",
            "shared_with",
            "artifact_location",
            "lifecycle_stage",
            "creation_time",
            "last_update_time",
            "description",
            "tags",
        ),
    ),  # fmt: skip
    "Metric": _obj(
        {
            "key": {"type": "string"},
            "value": {
                "oneOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}],
                "description": "a double; NaN and infinities as strings, as in MLflow",
            },
            "timestamp": MS,
            "step": {"type": "integer"},
        },
        ("key", "value", "timestamp", "step"),
    ),
    "Run": _obj(
        {
            "id": {"type": "string"},
            "project_id": {"type": "integer"},
            "name": {"type": "string"},
            "user": {"type": "string"},
            "status": {"enum": STATES},
            "status_reason": {"type": "string"},
            "start_time": MS,
            "end_time": MS_OR_NULL,
            "heartbeat": MS_OR_NULL,
            "lifecycle_stage": {"enum": ["active", "deleted"]},
            "artifact_uri": {"type": "string"},
            "params": STR_MAP,
            "tags": STR_MAP,
            "metrics": {
                "type": "object",
                "additionalProperties": ref("Metric"),
                "description": "the latest point of each metric",
            },
            "code": OBJ,
            "environment": OBJ,
            "failure": OBJ,
        },
        (
            "id",
            "project_id",
            "name",
            "user",
            "status",
            "status_reason",
            "start_time",
            "end_time",
            "heartbeat",
            "lifecycle_stage",
            "artifact_uri",
            "params",
            "tags",
            "metrics",
            "code",
            "environment",
            "failure",
        ),
    ),  # fmt: skip
    "LogLine": _obj(
        {"offset": {"type": "integer", "minimum": 0}, "text": {"type": "string"}, "timestamp": MS},
        ("offset", "text", "timestamp"),
    ),
    "Artifact": _obj(
        {
            "path": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "size": {"type": "integer", "minimum": 0},
            "created": MS,
        },
        ("path", "sha256", "size", "created"),
    ),
    "Job": _obj(
        {
            "id": {"type": "string"},
            "run_id": {"type": "string"},
            "project_id": {"type": "integer"},
            "user": {"type": "string"},
            "group": {"type": "string", "description": "the group charged"},
            "executor": {"type": "string"},
            "state": {"enum": STATES},
            "created": MS,
            "resources": {"type": "object", "description": "validated, defaults filled in"},
            "config": OBJ,
            "external_id": {"type": ["string", "null"], "description": "the executor's id"},
            "reason": {"type": "string"},
            "node": {"type": "string"},
            "exit_code": {"type": ["integer", "null"]},
            "started": MS_OR_NULL,
            "ended": MS_OR_NULL,
            "resubmit_of": {"type": ["string", "null"]},
        },
        (
            "id",
            "run_id",
            "project_id",
            "user",
            "group",
            "executor",
            "state",
            "created",
            "resources",
            "config",
            "external_id",
            "reason",
            "node",
            "exit_code",
            "started",
            "ended",
            "resubmit_of",
        ),
    ),  # fmt: skip
    "RunEvent": _obj(
        {
            "run_id": {"type": "string"},
            "time": MS,
            "kind": {"type": "string", "description": "submitted, queued, started, ended ..."},
            "message": {"type": "string"},
        },
        ("run_id", "time", "kind", "message"),
    ),
    "JobLimits": _obj(
        {
            "executors": {"type": "array", "items": {"type": "string"}},
            "partitions": {"type": "array", "items": {"type": "string"}},
            "accounts": {"type": "array", "items": {"type": "string"}},
            "max_jobs": {"type": "integer"},
            "max_jobs_per_user": {"type": ["integer", "null"]},
            "max_nodes": {"type": "integer"},
            "max_gpus": {"type": "integer"},
            "max_cpus": {"type": "integer"},
            "max_mem_mb": {"type": "integer"},
            "max_time_s": {"type": "integer"},
            "default_time_s": {"type": "integer"},
            "default_mem_mb": {"type": "integer"},
            "default_cpus": {"type": "integer"},
        },
        (
            "executors",
            "partitions",
            "accounts",
            "max_jobs",
            "max_jobs_per_user",
            "max_nodes",
            "max_gpus",
            "max_cpus",
            "max_mem_mb",
            "max_time_s",
            "default_time_s",
            "default_mem_mb",
            "default_cpus",
        ),
    ),  # fmt: skip
    "ProjectPage": _items(ref("Project"), _pagination=NEXT_TOKEN),
    "RunPage": _items(ref("Run"), _pagination=NEXT_TOKEN),
    "JobPage": _items(
        ref("Job"),
        _pagination=_obj(
            {"offset": {"type": ["integer", "null"], "description": "of the next page"}},
            ("offset",),
        ),
    ),
    "MetricHistory": _items(ref("Metric")),
    "LogPage": _items(
        ref("LogLine"), next_offset={"type": "integer", "minimum": 0, "description": "continue"}
    ),
    "ArtifactList": _items(ref("Artifact")),
    "Storage": _obj(
        {
            "group": {"type": ["string", "null"], "description": "null: private projects"},
            "owner": {"type": "string", "description": "of private projects"},
            "used_bytes": {"type": "integer"},
            "cap_bytes": {"type": ["integer", "null"], "description": "null: no cap"},
            "free_bytes": {"type": ["integer", "null"]},
        },
        ("group", "used_bytes", "cap_bytes", "free_bytes"),
    ),
    "StorageList": _obj(
        {
            "items": {"type": "array", "items": ref("Storage")},
            "capped": {"type": "boolean", "description": "whether any bucket has a cap"},
        },
        ("items", "capped"),
    ),
    "ArtifactVersion": _obj(
        {
            "id": {"type": "integer"},
            "project_id": {"type": "integer"},
            "name": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "ref": {"type": "string", "description": "name:v3"},
            "run_id": {"type": "string", "description": "the producing run"},
            "path": {"type": "string", "description": "the run artifact it came from"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "size": {"type": "integer", "minimum": 0},
            "created": MS,
            "aliases": {"type": "array", "items": {"type": "string"}},
            "description": {"type": "string"},
            "metadata": OBJ,
        },
        (
            "id",
            "project_id",
            "name",
            "version",
            "ref",
            "run_id",
            "path",
            "sha256",
            "size",
            "created",
            "aliases",
            "description",
            "metadata",
        ),
    ),  # fmt: skip
    "ArtifactName": _obj(
        {
            "name": {"type": "string"},
            "project_id": {"type": "integer"},
            "versions": {"type": "integer", "minimum": 1},
            "latest": ref("ArtifactVersion"),
            "aliases": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        ("name", "project_id", "versions", "latest", "aliases"),
    ),
    "ArtifactNamePage": _items(ref("ArtifactName"), _pagination=NEXT_TOKEN),
    "ArtifactVersionPage": _items(ref("ArtifactVersion"), _pagination=NEXT_TOKEN),
    "ArtifactUseList": _items(
        _obj({"time": MS, "version": ref("ArtifactVersion")}, ("time", "version"))
    ),
    "RunUpdates": _obj(
        {
            "run": ref("Run"),
            "cursor": _obj(
                {
                    "stdout": {"type": "integer", "minimum": 0},
                    "stderr": {"type": "integer", "minimum": 0},
                    "metrics": {"type": ["string", "null"]},
                    "events": {"type": "integer", "minimum": 0},
                    "partial_stdout": {"type": "integer", "description": "partial lines seen"},
                    "partial_stderr": {"type": "integer"},
                },
                ("stdout", "stderr", "metrics", "events"),
                closed=False,
            ),
            "stdout": ref("LiveLog"),
            "stderr": ref("LiveLog"),
            "metrics": _obj(
                {
                    "points": {"type": "array", "items": ref("Metric")},
                    "cursor": {"type": ["string", "null"], "description": "resume from here"},
                    "reset": {"type": "boolean", "description": "points are the history"},
                },
                ("points", "cursor", "reset"),
            ),
            "timeline": {"type": "array", "items": ref("RunEvent")},
            "done": {"type": "boolean", "description": "the run has ended and all is sent"},
        },
        ("run", "cursor", "stdout", "stderr", "metrics", "timeline", "done"),
        closed=False,  # live.py may add fields; the cursor is to be sent back as it is
    ),
    "LiveLog": _obj(
        {
            "lines": {"type": "array", "items": ref("LogLine")},
            "next_offset": {"type": "integer", "minimum": 0},
            "partial": {"type": "string", "description": "the unfinished last line"},
        },
        ("lines", "next_offset", "partial"),
        closed=False,
    ),
    "RunEventList": _items(ref("RunEvent")),
}

METRIC_IN = _obj(
    {
        "key": KEY,
        "value": {"type": "number"},
        "step": {**INT64, "default": 0},
        "timestamp": {**INT64, "description": "ms since the epoch (default: now)"},
    },
    ("key", "value"),
)
PARAMS_IN = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
    "description": "write-once; numbers are stored as their text",
}
RESOURCES_IN = _obj(
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

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/projects": {
        "get": _op(
            "Projects you may read",
            query=(
                ("name", "string", "exact name, or group/name (~/name: private); at most one"),
                ("name_like", "string", "SQL LIKE"),
                *PAGING,
            ),
            returns=ref("ProjectPage"),
        ),
        "post": _op(
            "Create a project (in one of your groups, or private)",
            ok=201,
            returns=ref("Project"),
            body=_obj(
                {
                    "name": {"type": "string", "minLength": 1, "maxLength": 500},
                    "group": {"type": ["string", "null"], "description": "null: private"},
                    "description": {"type": ["string", "null"]},
                    "tags": {**STR_MAP, "type": ["object", "null"]},
                },
                ("name",),
            ),
        ),
    },
    "/api/v1/projects/{project_id}": {
        "get": _op("One project", returns=ref("Project")),
        "patch": _op(
            "Rename or describe (owner); transfer to another owner (group managers, admins)",
            returns=ref("Project"),
            body=_obj(
                {
                    "name": {"type": "string", "minLength": 1, "maxLength": 500},
                    "description": {"type": "string"},
                    "owner": {
                        "type": "string",
                        "description": "new owner, a member of the project's group",
                    },
                }
            ),
        ),
        "delete": _op("Delete (owner; restorable)", ok=204),
    },
    "/api/v1/projects/{project_id}/shares/{group}": {
        "put": _op("Share with a group (owner)", returns=ref("Project")),
        "delete": _op("Stop sharing (owner)", returns=ref("Project")),
    },
    "/api/v1/runs": {
        "get": _op(
            "Search runs",
            query=(
                ("project", "integer", "project id (repeatable)"),
                ("filter", "string", "MLflow filter, e.g. metrics.loss < 0.5 and params.L = '8'"),
                ("order_by", "string", "e.g. metrics.loss DESC (repeatable)"),
                *PAGING,
            ),
            returns=ref("RunPage"),
        ),
        "post": _op(
            "Create a run",
            ok=201,
            returns=ref("Run"),
            body=_obj(
                {
                    "project": {"type": ["integer", "string"], "description": "id or name"},
                    "name": {"type": "string"},
                    "params": {**PARAMS_IN, "type": ["object", "null"]},
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
        "get": _op("One run with params, tags, latest metrics and records", returns=ref("Run")),
        "patch": _op(
            "Change status, end_time, heartbeat, name, code, environment, failure (409: a "
            "LOST run cannot become QUEUED or RUNNING again)",
            returns=ref("Run"),
            errors=(409,),
            body=_obj(
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
        "post": _op(
            "Log metrics, params (write-once) and tags; retry-safe",
            returns=_obj({}),
            body=_obj(
                {
                    "metrics": {"type": "array", "items": METRIC_IN, "maxItems": 1000},
                    "params": PARAMS_IN,
                    "tags": STR_MAP,
                }
            ),
        ),
    },
    "/api/v1/runs/{run_id}/metrics/{key}": {
        "get": _op(
            "A metric's history, by step",
            query=(
                ("offset", {"type": "integer", "minimum": 0}, "first point (default 0)"),
                (
                    "limit",
                    {"type": "integer", "minimum": 0},
                    "points, at most 50000 (default 50000; page with offset)",
                ),
            ),  # fmt: skip
            returns=ref("MetricHistory"),
        )
    },
    "/api/v1/runs/{run_id}/logs/{stream}": {
        "get": _op(
            "Log lines (stream: stdout or stderr); next_offset to continue",
            query=(
                ("offset", {"type": "integer", "minimum": 0}, "first line (default 0)"),
                ("limit", {"type": "integer", "minimum": 0}, "lines, at most 10000 (default 1000)"),
            ),  # fmt: skip
            returns=ref("LogPage"),
        ),
        "post": _op(
            "Append lines at offset; idempotent on retry (a gap is refused). A line with "
            "carriage returns is stored as what a terminal shows; partial is the unfinished "
            "last line, shown live and not stored",
            returns=_obj({"next_offset": {"type": "integer", "minimum": 0}}, ("next_offset",)),
            body=_obj(
                {
                    "offset": {**INT64, "minimum": 0},
                    "lines": {"type": "array", "items": {"type": "string"}, "maxItems": 10000},
                    "partial": {"type": ["string", "null"]},
                },
                ("offset", "lines"),
            ),
        ),
    },
    "/api/v1/runs/{run_id}/artifacts": {
        "get": _op(
            "Artifacts of a run",
            query=(("prefix", "string", "path prefix"),),
            returns=ref("ArtifactList"),
        )
    },
    "/api/v1/runs/{run_id}/artifacts/{path}": {
        "get": _op(
            "Download an artifact (header X-Content-SHA256: its hash)",
            returns={"type": "string", "format": "binary"},
            media="application/octet-stream",
        ),
        "delete": _op(
            "Delete a file, or every file under a directory (the run's writers); frees its "
            "group's storage once nothing else points to the same content",
            returns=_obj({"deleted": {"type": "array", "items": ref("Artifact")}}, ("deleted",)),
        ),
        "put": {
            **_op(
                "Upload (replaces the path's previous version); header X-Content-SHA256 or "
                "query sha256 to verify",
                ok=201,
                returns=ref("Artifact"),
                query=(("sha256", "string", "expected sha256 of the body"),),
                errors=(413,),
            ),
            "description": "413 also when the upload would take the project's group (or the "
            "owner's private projects) past its artifact storage cap "
            "(error_code STORAGE_QUOTA_EXCEEDED).",
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
        },
    },
    "/api/v1/storage": {
        "get": _op(
            "Artifact storage in use and its cap: your groups and private projects (admins "
            "and services with custom:latticehub-usage:read: any group)",
            query=(("group", "string", "a group (repeatable); default: all of yours"),),
            returns=ref("StorageList"),
        )
    },
    "/api/v1/runs/{run_id}/events": {
        "get": _op(
            "The run's job timeline, oldest first", returns=ref("RunEventList"), errors=(503,)
        )
    },
    "/api/v1/jobs": {
        "get": _op(
            "Jobs you may see (yours and your groups'; services with "
            "custom:latticehub-usage:read: every group's), newest first",
            query=(
                ("state", {"enum": STATES}, "only jobs in this state (repeatable)"),
                ("group", "string", "only jobs charged to this group, one of yours (repeatable)"),
                ("limit", {"type": "integer", "minimum": 1}, "page size, at most 1000"),
                ("offset", {"type": "integer", "minimum": 0}, "first job"),
            ),
            returns=ref("JobPage"),
            errors=(503,),
        ),
        "post": _op(
            "Launch a training job; creates its run QUEUED (429 at the group's job limit)",
            ok=201,
            returns=_JOB,
            errors=(429, 503),
            body=_obj(
                {
                    "project": {"type": "string", "minLength": 1, "description": "a name"},
                    "group": {"type": "string", "description": "group to charge"},
                    "name": {"type": "string"},
                    "config": {"type": "object", "description": "flows.train config"},
                    "resources": RESOURCES_IN,
                },
                ("project",),
            ),
        ),
    },
    "/api/v1/jobs/options": {
        "get": _op(
            "Executors, partitions and maxima per group",
            returns=_obj(
                {"groups": {"type": "object", "additionalProperties": ref("JobLimits")}},
                ("groups",),
            ),
            errors=(503,),
        )
    },
    "/api/v1/jobs/{job_id}": {
        "get": _op("One job", returns=_JOB, errors=(503,)),
        "delete": _op(
            "Cancel (owner or admin); 409 if it has ended", returns=_JOB, errors=(409, 503)
        ),
    },
    "/api/v1/jobs/{job_id}/resubmit": {
        "post": _op(
            "A new job with the same project, config and resources",
            ok=201,
            returns=_JOB,
            errors=(429, 503),
        )
    },
}


def _declare_path_parameters(path: str, item: dict[str, Any]) -> None:
    """Declare each ``{name}`` of ``path`` on every operation of ``item`` that lacks it."""
    names = re.findall(r"\{([^}]+)\}", path)
    for op in item.values():
        declared = {(p.get("in"), p.get("name")) for p in op.get("parameters", ())}
        missing = [
            {"name": name, "in": "path", "required": True, "schema": PATH_PARAMS[name]}
            for name in names
            if ("path", name) not in declared
        ]
        if missing:
            op["parameters"] = [*missing, *op.get("parameters", ())]


_BINARY = {"type": "string", "format": "binary"}
#: Success responses that ``openapi_paths`` of other modules leave undescribed:
#: ``(method, path) -> (media type, schema)``; used only where nothing is declared.
RESPONSE_DEFAULTS: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("get", "/api/v1/runs/{run_id}/stream"): ("text/event-stream", {"type": "string"}),
    ("get", "/api/v1/runs/{run_id}/updates"): ("application/json", ref("RunUpdates")),
    ("get", "/api/v1/projects/{project_id}/artifacts"): (
        "application/json", ref("ArtifactNamePage"),
    ),
    ("get", "/api/v1/projects/{project_id}/artifacts/{name}"): (
        "application/json", ref("ArtifactVersionPage"),
    ),
    ("get", "/api/v1/projects/{project_id}/artifacts/{name}/{ref}/file"): (
        "application/octet-stream", _BINARY,
    ),
    ("get", "/api/v1/runs/{run_id}/uses"): ("application/json", ref("ArtifactUseList")),
}  # fmt: skip


def _describe_success(path: str, item: dict[str, Any]) -> None:
    """Fill in the success response of operations that declare none (see above)."""
    for method, op in item.items():
        default = RESPONSE_DEFAULTS.get((method, path))
        ok = [r for code, r in op.get("responses", {}).items() if code.startswith("2")]
        if default and len(ok) == 1 and "content" not in ok[0]:
            media, schema = default
            ok[0]["content"] = {media: {"schema": schema}}


def all_paths() -> dict[str, Any]:
    """This module's paths plus those declared beside their handlers (``openapi_paths``).

    Every path parameter is declared, with its schema from :data:`PATH_PARAMS`, and
    success responses left undescribed get theirs from :data:`RESPONSE_DEFAULTS`.
    """
    from . import live, registry

    paths = copy.deepcopy({**PATHS, **live.openapi_paths, **registry.openapi_paths})
    for path, item in paths.items():
        _declare_path_parameters(path, item)
        _describe_success(path, item)
    return paths


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "latticehub experiments",
            "version": "1",
            "description": "Experiment tracking. Authenticate with 'Authorization: token "
            "<Hub API token>'. Errors are {error_code, message, status}.",
        },
        "servers": [{"url": "/services/experiments"}],
        "paths": all_paths(),
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "securitySchemes": {
                "hubToken": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
        },
        "security": [{"hubToken": []}],
    }


class OpenAPIHandler(web.RequestHandler):
    """``/api/v1/openapi.json`` (public: it describes, it reveals no data)."""

    def get(self) -> None:
        """The document."""
        self.write(document())


default_handlers = [(r"/api/v1/openapi.json", OpenAPIHandler)]
