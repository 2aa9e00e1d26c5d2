"""The OpenAPI document cannot fall behind the handler table (pure: no server)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from tornado import web

from hub_ext.experiments import handlers
from hub_ext.experiments.handlers import default_handlers, openapi
from hub_ext.experiments.handlers.openapi import RESOURCE_MODULES, all_paths, document
from hub_ext.experiments.handlers.schemas import ERRORS, Query, operation, ref

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


@pytest.mark.parametrize("module", RESOURCE_MODULES, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_each_module_declares_exactly_its_own_routes(module):
    """Paths live beside the routes that serve them: no module documents another's."""
    routes = {
        _route_template(pattern)
        for pattern, _ in module.default_handlers
        if pattern.startswith("/api/v1/")
    }
    assert {_template(path) for path in module.openapi_paths} == routes


def _relative_imports(module_file: Path) -> set[str]:
    """The sibling modules a handler module imports (``from .x import``, ``from . import x``)."""
    found = set()
    for node in ast.walk(ast.parse(module_file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
    return found


HANDLER_FILES = sorted(Path(handlers.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", HANDLER_FILES, ids=lambda p: p.stem)
def test_no_module_but_the_package_imports_the_assembler(path):
    """openapi imports the resource modules, never the reverse (no import cycle)."""
    if path.stem != "__init__":
        assert "openapi" not in _relative_imports(path)


def test_the_shared_pieces_import_nothing_of_the_service():
    source = Path(handlers.__file__).parent / "schemas.py"
    imported = {
        n.module or "" for n in ast.walk(ast.parse(source.read_text()))
        if isinstance(n, ast.ImportFrom)
    } | {
        a.name for n in ast.walk(ast.parse(source.read_text())) if isinstance(n, ast.Import)
        for a in n.names
    }  # fmt: skip
    assert imported <= {"__future__", "collections.abc", "typing"}


def test_a_path_declared_by_two_modules_is_refused(monkeypatch):
    from hub_ext.experiments.handlers import jobs, runs

    twice = {**jobs.openapi_paths, "/api/v1/runs": runs.openapi_paths["/api/v1/runs"]}
    monkeypatch.setattr(jobs, "openapi_paths", twice)
    with pytest.raises(ValueError, match="one module per path"):
        all_paths()


def test_every_module_with_native_routes_is_assembled():
    serving = {
        m.__name__
        for m in vars(handlers).values()
        if getattr(m, "default_handlers", None) is not None and m is not openapi
        and any(p.startswith("/api/v1/") for p, _ in m.default_handlers)
    }  # fmt: skip
    assert serving == {m.__name__ for m in RESOURCE_MODULES}


@pytest.mark.parametrize(
    ("kwargs", "codes", "body"),
    [
        ({}, ["200", "400", "401", "403", "404"], None),
        ({"ok": 204}, ["204", "400", "401", "403", "404"], None),
        ({"errors": (409, 503)}, ["200", "400", "401", "403", "404", "409", "503"], None),
        ({"body": {"type": "object"}}, ["200", "400", "401", "403", "404", "413"], False),
        ({"body": {"type": "object", "required": ["x"]}},
         ["200", "400", "401", "403", "404", "413"], True),
        ({"body": {"type": "string"}, "body_required": True},
         ["200", "400", "401", "403", "404", "413"], True),
        ({"notes": {409: "aliases first"}}, ["200", "400", "401", "403", "404", "409"], None),
    ],
)  # fmt: skip
def test_operation_answers_errors_as_the_error_body(kwargs, codes, body):
    op = operation("Do it", **kwargs)
    assert sorted(op["responses"]) == codes
    for code in codes[1:]:
        response = op["responses"][code]
        assert response["content"]["application/json"]["schema"] == ref("Error")
        assert response["description"] == kwargs.get("notes", {}).get(int(code), ERRORS[int(code)])
    if body is None:
        assert "requestBody" not in op
    else:
        assert op["requestBody"]["required"] is body


def test_operation_describes_query_parameters_and_streams():
    op = operation(
        "Stream",
        returns={"type": "string"},
        media="text/event-stream",
        query=(Query("n", "integer", "how many"), Query("old", {"enum": [1]}, "gone", True)),
        streaming=True,
    )
    assert op["responses"]["200"]["content"] == {
        "text/event-stream": {"schema": {"type": "string"}}
    }
    assert op["parameters"] == [
        {"name": "n", "in": "query", "required": False, "description": "how many",
         "schema": {"type": "integer"}},
        {"name": "old", "in": "query", "required": False, "description": "gone",
         "schema": {"enum": [1]}, "deprecated": True},
    ]  # fmt: skip
    assert op["x-streaming"] is True


def test_jobs_page_by_token_and_offset_is_deprecated():
    op = DOC["paths"]["/api/v1/jobs"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["max_results"]["schema"]["maximum"] == 1000
    assert "page_token" in params and params["offset"]["deprecated"] is True
    assert params["limit"]["deprecated"] is True
    page = DOC["components"]["schemas"]["JobPage"]["properties"]["_pagination"]
    assert page["required"] == ["next_token"]
