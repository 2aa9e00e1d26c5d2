"""Shared pieces of the native API's OpenAPI 3.1 document: components, parameters, errors.

Each resource module declares its own path items beside its routes (``openapi_paths``, built
with :func:`operation`); :mod:`.openapi` assembles them into the served document. This module
imports nothing of the service, so every handler module may import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

#: A JSON schema (or a piece of one).
Schema = dict[str, Any]
#: An OpenAPI operation object.
Operation = dict[str, Any]
#: OpenAPI path items: ``{"/api/v1/runs/{run_id}": {"get": Operation, ...}}``.
PathItems = dict[str, dict[str, Operation]]

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


class Query(NamedTuple):
    """An optional query parameter of an operation."""

    name: str
    #: a JSON type name (``"string"``) or a whole schema
    schema: str | Schema
    description: str
    #: still accepted, on its way out (OpenAPI's ``deprecated``)
    deprecated: bool = False


def operation(
    summary: str,
    *,
    returns: Schema | None = None,
    ok: int = 200,
    media: str = "application/json",
    query: Sequence[Query] = (),
    body: Schema | None = None,
    body_media: str = "application/json",
    body_required: bool | None = None,
    errors: Iterable[int] = (),
    notes: Mapping[int, str] | None = None,
    description: str | None = None,
    streaming: bool = False,
) -> Operation:
    """An operation: ``ok`` answers ``returns``, every error answers :data:`ERROR`.

    Path parameters are left out: the assembled document declares each ``{name}`` of a path
    with its schema from :data:`PATH_PARAMS`.

    Args:
        summary: one line on what it does.
        returns: the schema of the success response (None: no body, as for 204).
        ok: the success status.
        media: the success response's media type.
        query: the optional query parameters.
        body: the schema of the request body; adds 413 to the errors.
        body_media: the request body's media type.
        body_required: whether the body must be sent (default: when the schema requires
            fields; a JSON body left out is taken as ``{}``).
        errors: statuses beyond :data:`BASE_ERRORS`.
        notes: for some error statuses, when they happen (instead of :data:`ERRORS`' text).
        description: more than the summary says.
        streaming: the response never ends while its subject is live (``x-streaming``).

    Returns:
        The operation object, to put under its method in a path item.
    """
    response: dict[str, Any] = {"description": "OK" if ok != 204 else "Done (no content)"}
    if returns is not None:
        response["content"] = {media: {"schema": returns}}
    notes = notes or {}
    codes = sorted({*BASE_ERRORS, *errors, *notes, *((413,) if body is not None else ())})
    op: Operation = {
        "summary": summary,
        "responses": {
            str(ok): response,
            **{
                str(code): {"description": notes.get(code, ERRORS[code]), "content": ERR}
                for code in codes
            },
        },
    }
    if description:
        op["description"] = description
    if body is not None:
        required = bool(body.get("required")) if body_required is None else body_required
        op["requestBody"] = {"required": required, "content": {body_media: {"schema": body}}}
    if query:
        op["parameters"] = [_query_parameter(q) for q in query]
    if streaming:
        op["x-streaming"] = True
    return op


def _query_parameter(q: Query) -> dict[str, Any]:
    param = {
        "name": q.name,
        "in": "query",
        "required": False,
        "description": q.description,
        "schema": {"type": q.schema} if isinstance(q.schema, str) else q.schema,
    }
    if q.deprecated:
        param["deprecated"] = True
    return param


def obj(properties: Schema, required: Sequence[str] = (), *, closed: bool = True) -> Schema:
    """An object schema; ``closed`` refuses unknown fields (``additionalProperties: false``)."""
    out: Schema = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def items_of(item: Schema, **extra: Schema) -> Schema:
    """A list answer: ``{"items": [item], **extra}`` (every field required)."""
    return obj({"items": {"type": "array", "items": item}, **extra}, ("items", *extra))


#: The token paging of lists (projects, runs, registry names and versions; jobs: at most 1000).
PAGING = (
    Query("page_token", "string", "next_token of the previous page"),
    Query("max_results", {"type": "integer", "minimum": 1, "maximum": 50000},
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
BINARY = {"type": "string", "format": "binary"}
NEXT_TOKEN = obj({"next_token": {"type": ["string", "null"]}}, ("next_token",))

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
    "Error": obj(
        {
            "error_code": {"type": "string", "description": "MLflow's, e.g. INVALID_STATE"},
            "message": {"type": "string", "description": "what went wrong, and the fix"},
            "status": {"type": "integer", "description": "the HTTP status"},
        },
        ("error_code", "message", "status"),
    ),
    "Project": obj(
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
    "Metric": obj(
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
    "Run": obj(
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
    "LogLine": obj(
        {"offset": {"type": "integer", "minimum": 0}, "text": {"type": "string"}, "timestamp": MS},
        ("offset", "text", "timestamp"),
    ),
    "Artifact": obj(
        {
            "path": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "size": {"type": "integer", "minimum": 0},
            "created": MS,
        },
        ("path", "sha256", "size", "created"),
    ),
    "Job": obj(
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
    "RunEvent": obj(
        {
            "run_id": {"type": "string"},
            "time": MS,
            "kind": {"type": "string", "description": "submitted, queued, started, ended ..."},
            "message": {"type": "string"},
        },
        ("run_id", "time", "kind", "message"),
    ),
    "JobLimits": obj(
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
    "ProjectPage": items_of(ref("Project"), _pagination=NEXT_TOKEN),
    "RunPage": items_of(ref("Run"), _pagination=NEXT_TOKEN),
    "JobPage": items_of(
        ref("Job"),
        _pagination=obj(
            {
                "next_token": {
                    "type": ["string", "null"],
                    "description": "page_token of the next page",
                },
                "offset": {
                    "type": ["integer", "null"],
                    "description": "deprecated: of the next page, only when offset was sent",
                },
            },
            ("next_token",),
        ),
    ),
    "MetricHistory": items_of(ref("Metric")),
    "LogPage": items_of(
        ref("LogLine"), next_offset={"type": "integer", "minimum": 0, "description": "continue"}
    ),
    "ArtifactList": items_of(ref("Artifact")),
    "Storage": obj(
        {
            "group": {"type": ["string", "null"], "description": "null: private projects"},
            "owner": {"type": "string", "description": "of private projects"},
            "used_bytes": {"type": "integer"},
            "cap_bytes": {"type": ["integer", "null"], "description": "null: no cap"},
            "free_bytes": {"type": ["integer", "null"]},
        },
        ("group", "used_bytes", "cap_bytes", "free_bytes"),
    ),
    "StorageList": obj(
        {
            "items": {"type": "array", "items": ref("Storage")},
            "capped": {"type": "boolean", "description": "whether any bucket has a cap"},
        },
        ("items", "capped"),
    ),
    "ArtifactVersion": obj(
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
    "ArtifactName": obj(
        {
            "name": {"type": "string"},
            "project_id": {"type": "integer"},
            "versions": {"type": "integer", "minimum": 1},
            "latest": ref("ArtifactVersion"),
            "aliases": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        ("name", "project_id", "versions", "latest", "aliases"),
    ),
    "ArtifactNamePage": items_of(ref("ArtifactName"), _pagination=NEXT_TOKEN),
    "ArtifactVersionPage": items_of(ref("ArtifactVersion"), _pagination=NEXT_TOKEN),
    "ArtifactUseList": items_of(
        obj({"time": MS, "version": ref("ArtifactVersion")}, ("time", "version"))
    ),
    "RunUpdates": obj(
        {
            "run": ref("Run"),
            "cursor": obj(
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
            "metrics": obj(
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
    "LiveLog": obj(
        {
            "lines": {"type": "array", "items": ref("LogLine")},
            "next_offset": {"type": "integer", "minimum": 0},
            "partial": {"type": "string", "description": "the unfinished last line"},
        },
        ("lines", "next_offset", "partial"),
        closed=False,
    ),
    "RunEventList": items_of(ref("RunEvent")),
}
