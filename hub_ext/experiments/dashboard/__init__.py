"""The dashboard: server-rendered pages under ``/services/experiments/`` (Hub OAuth login)."""

from __future__ import annotations

from pathlib import Path

TEMPLATE_DIR = str(Path(__file__).parent / "templates")
STATIC_DIR = str(Path(__file__).parent / "static")

#: ``(path regex, handler)`` relative to the service prefix, gathered last by the handlers
#: package (after every ``/api/`` route). The handlers are named, not imported: the page
#: module imports ``handlers.base``, whose package imports this one, so tornado imports
#: them when the application is built (a string target of a route is an import path).
default_handlers: list = [
    (r"/", f"{__name__}.pages.ProjectsPage"),
    (r"/projects/([^/]+)", f"{__name__}.pages.ProjectPage"),
    (r"/runs/([0-9a-zA-Z]+)", f"{__name__}.pages.RunPage"),
    (r"/compare", f"{__name__}.pages.ComparePage"),
]
