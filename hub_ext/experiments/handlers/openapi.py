"""The OpenAPI 3.1 document of the native API, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from tornado import web

ERROR = {"$ref": "#/components/schemas/Error"}
ERR = {"application/json": {"schema": ERROR}}


def _op(summary: str, *, body: dict | None = None, ok: int = 200, query: tuple = ()) -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            str(ok): {"description": "OK"},
            "400": {"description": "Bad input", "content": ERR},
            "401": {"description": "No or bad token"},
            "403": {"description": "Read-only access", "content": ERR},
            "404": {"description": "Unknown or not visible", "content": ERR},
        },
    }  # fmt: skip
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if query:
        op["parameters"] = [
            {"name": name, "in": "query", "required": False, "schema": {"type": kind},
             "description": text}
            for name, kind, text in query
        ]  # fmt: skip
    return op


PAGING = (
    ("page_token", "string", "next_token of the previous page"),
    ("max_results", "integer", "page size, 1..50000 (default 100)"),
)
OBJ = {"type": "object"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METRIC = {
    "type": "object",
    "required": ["key", "value"],
    "properties": {
        "key": {"type": "string"},
        "value": {"type": "number"},
        "step": {"type": "integer"},
        "timestamp": {"type": "integer", "description": "ms since the epoch"},
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/projects": {
        "get": _op("Projects you may read", query=(("name_like", "string", "SQL LIKE"), *PAGING)),
        "post": _op(
            "Create a project (in one of your groups, or private)",
            ok=201,
            body={
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "group": {"type": ["string", "null"]},
                    "description": {"type": "string"},
                    "tags": STR_MAP,
                },
            },
        ),  # fmt: skip
    },
    "/api/v1/projects/{project_id}": {
        "get": _op("One project"),
        "patch": _op("Rename or describe (owner)", body=OBJ),
        "delete": _op("Delete (owner; restorable)", ok=204),
    },
    "/api/v1/projects/{project_id}/shares/{group}": {
        "put": _op("Share with a group (owner)"),
        "delete": _op("Stop sharing (owner)"),
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
        ),
        "post": _op(
            "Create a run",
            ok=201,
            body={
                "type": "object",
                "required": ["project"],
                "properties": {
                    "project": {"type": ["integer", "string"]},
                    "name": {"type": "string"},
                    "params": OBJ,
                    "tags": STR_MAP,
                    "status": {"enum": ["QUEUED", "RUNNING"]},
                    "start_time": {"type": "integer"},
                },
            },
        ),  # fmt: skip
    },
    "/api/v1/runs/{run_id}": {
        "get": _op("One run with params, tags, latest metrics and records"),
        "patch": _op(
            "Change status, end_time, heartbeat, name, code, environment, failure",
            body=OBJ,
        ),
    },
    "/api/v1/runs/{run_id}/batch": {
        "post": _op(
            "Log metrics, params (write-once) and tags; retry-safe",
            body={
                "type": "object",
                "properties": {
                    "metrics": {"type": "array", "items": METRIC, "maxItems": 1000},
                    "params": OBJ,
                    "tags": STR_MAP,
                },
            },
        ),  # fmt: skip
    },
    "/api/v1/runs/{run_id}/metrics/{key}": {
        "get": _op(
            "A metric's history",
            query=(("offset", "integer", "first point"), ("limit", "integer", "points")),
        )
    },
    "/api/v1/runs/{run_id}/logs/{stream}": {
        "get": _op(
            "Log lines (stream: stdout or stderr)",
            query=(("offset", "integer", "first line"), ("limit", "integer", "lines")),
        ),
        "post": _op(
            "Append lines at offset; idempotent on retry",
            body={
                "type": "object",
                "required": ["offset", "lines"],
                "properties": {
                    "offset": {"type": "integer", "minimum": 0},
                    "lines": {"type": "array", "items": {"type": "string"}},
                },
            },
        ),  # fmt: skip
    },
    "/api/v1/runs/{run_id}/artifacts": {
        "get": _op("Artifacts of a run", query=(("prefix", "string", "path prefix"),))
    },
    "/api/v1/runs/{run_id}/artifacts/{path}": {
        "get": _op("Download an artifact"),
        "put": _op(
            "Upload (body: the bytes; header X-Content-SHA256 to verify)",
            ok=201,
            body={"type": "string", "format": "binary"},
        ),
    },
    "/api/v1/runs/{run_id}/events": {"get": _op("The run's job timeline, oldest first")},
    **{
        "/api/v1/jobs": {
            "get": _op(
                "Jobs you may see (yours and your groups'), newest first",
                query=(
                    ("state", "string", "QUEUED, RUNNING, FINISHED, FAILED, KILLED or LOST"),
                    ("limit", "integer", "page size, at most 1000"),
                    ("offset", "integer", "first job"),
                ),
            ),
            "post": _op(
                "Launch a training job; creates its run QUEUED (429 at the group's job limit)",
                ok=201,
                body={
                    "type": "object",
                    "required": ["project"],
                    "properties": {
                        "project": {"type": "string"},
                        "group": {"type": "string", "description": "group to charge"},
                        "name": {"type": "string"},
                        "config": {"type": "object", "description": "flows.train config"},
                        "resources": {
                            "type": "object",
                            "properties": {
                                "executor": {"enum": ["local", "slurm"]},
                                "partition": {"type": "string"},
                                "account": {"type": "string"},
                                "nodes": {"type": "integer"},
                                "gpus": {"type": "integer"},
                                "cpus": {"type": "integer"},
                                "mem": {"type": "string", "description": "e.g. 4G"},
                                "time": {"type": "string", "description": "e.g. 1:00:00"},
                            },
                        },
                    },
                },
            ),
        },
        "/api/v1/jobs/options": {"get": _op("Executors, partitions and maxima per group")},
        "/api/v1/jobs/{job_id}": {
            "get": _op("One job"),
            "delete": _op("Cancel (owner or admin); 409 if it has ended"),
        },
        "/api/v1/jobs/{job_id}/resubmit": {
            "post": _op("A new job with the same project, config and resources", ok=201)
        },
    },
}


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
        "paths": PATHS,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error_code": {"type": "string"},
                        "message": {"type": "string"},
                        "status": {"type": "integer"},
                    },
                }
            },
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
