"""The OpenAPI 3.1 document of the native API, served at ``/api/v1/openapi.json``.

Nothing is declared here: each resource module declares the path items of its routes beside
its ``default_handlers`` (``openapi_paths``, built with :func:`.schemas.operation`), and the
shared components live in :mod:`.schemas`. This module assembles them and declares each path
parameter with its schema from :data:`.schemas.PATH_PARAMS`. It imports the resource
modules; they import only :mod:`.schemas`, never this module.

``tests/unit/test_openapi.py`` checks that every route and method is documented and every
documented path routed, and ``tests/service/test_openapi_fuzz.py`` fuzzes the service from
this document.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tornado import web

from . import artifacts, columns, jobs, live, projects, registry, run_table, runs, storage
from .schemas import PATH_PARAMS, SCHEMAS, Operation, PathItems

#: The modules whose routes the document describes, in the document's order.
RESOURCE_MODULES = (projects, runs, run_table, columns, artifacts, storage, jobs, registry, live)


def _declare_path_parameters(path: str, item: dict[str, Operation]) -> None:
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


def all_paths() -> PathItems:
    """Every resource module's ``openapi_paths``, with their path parameters declared.

    Raises:
        ValueError: when two modules declare the same path (each route has one home).
    """
    paths: PathItems = {}
    for module in RESOURCE_MODULES:
        declared: PathItems = module.openapi_paths
        twice = sorted(set(paths) & set(declared))
        if twice:
            raise ValueError(f"{module.__name__} declares {twice} again: one module per path")
        paths.update(copy.deepcopy(declared))
    for path, item in paths.items():
        _declare_path_parameters(path, item)
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
