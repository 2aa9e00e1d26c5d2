"""The OpenAPI document cannot fall behind the handler table (pure: no server)."""

from __future__ import annotations

import re

import pytest
from tornado import web

from hub_ext.experiments.handlers import default_handlers
from hub_ext.experiments.handlers.openapi import document

METHODS = ("get", "put", "post", "patch", "delete")


def _template(path: str) -> str:
    """``/api/v1/runs/{run_id}`` -> ``/api/v1/runs/{}``."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def _route_template(pattern: str) -> str:
    """``/api/v1/runs/([0-9a-zA-Z]+)`` -> ``/api/v1/runs/{}``."""
    return re.sub(r"\([^)]*\)", "{}", pattern)


def native_routes() -> list[tuple[str, type]]:
    """Routes of the native API (not MLflow's, not the dashboard, not the document)."""
    return [
        (pattern, handler)
        for pattern, handler in default_handlers
        if pattern.startswith("/api/v1/") and not pattern.endswith("openapi.json")
    ]


def implemented(handler: type) -> set[str]:
    """The HTTP methods ``handler`` implements itself (not tornado's 405 defaults)."""
    return {m for m in METHODS if getattr(handler, m) is not getattr(web.RequestHandler, m)}


DOC = document()
BY_TEMPLATE = {_template(path): (path, item) for path, item in DOC["paths"].items()}


@pytest.mark.parametrize(("pattern", "handler"), native_routes(), ids=lambda v: str(v))
def test_every_route_and_method_is_documented(pattern, handler):
    template = _route_template(pattern)
    assert template in BY_TEMPLATE, f"{pattern} ({handler.__name__}) is not in the document"
    path, item = BY_TEMPLATE[template]
    assert implemented(handler) == set(item), f"{path}: methods differ from {handler.__name__}"
    names = re.findall(r"\{([^}]+)\}", path)
    assert len(names) == re.compile(pattern).groups, path


def test_every_documented_path_has_a_route():
    routes = {_route_template(pattern) for pattern, _ in native_routes()}
    assert set(BY_TEMPLATE) <= routes


@pytest.mark.parametrize("path", sorted(DOC["paths"]))
def test_operations_declare_path_parameters_and_responses(path):
    names = re.findall(r"\{([^}]+)\}", path)
    for method, op in DOC["paths"][path].items():
        declared = {p["name"]: p for p in op.get("parameters", ()) if p["in"] == "path"}
        assert sorted(declared) == sorted(names), f"{method.upper()} {path}"
        assert all(p["required"] and p["schema"] for p in declared.values())
        assert "401" in op["responses"], f"{method.upper()} {path}"
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert len(ok) == 1, f"{method.upper()} {path}: one success status"
        for code, response in op["responses"].items():
            if code >= "400":
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                assert schema in (None, {"$ref": "#/components/schemas/Error"})


def test_operations_describe_their_success_response():
    """Every operation says what it answers (all but 204)."""
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            for code, response in op["responses"].items():
                if code.startswith("2") and code != "204":
                    assert response.get("content"), f"{method.upper()} {path} {code}"


def test_references_resolve():
    text = repr(DOC)
    for name in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert name in DOC["components"]["schemas"], name
