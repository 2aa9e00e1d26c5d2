"""Notebook panels (ipywidgets) of latticehub: launch, watch and compare flow training inline.

- :class:`TrainingLauncher` -- a form for a ``flows.train`` job; becomes its monitor.
- :class:`RunMonitor` -- status, progress, live metric plots and output of one run.
- :class:`ResultsBrowser` -- a project's runs: filter, sort, page, compare, export.
- :func:`load_model`, :func:`download_artifacts` -- a run's trained flow and files.

They talk only to the ``experiments`` service through :class:`latticehub.client.TrackingClient`,
with the notebook's Hub token (see ``docs/widgets.md``); each accepts
``client=TrackingClient(url, token)``. Each panel is a view over a plain state object
(``widgets.launcher_state``, ``monitor_state``, ``browser_state``, ``artifacts``) that imports
no ipywidgets; the panels are imported (with ipywidgets) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .api import ServiceError
from .artifacts import download_artifacts, load_model

#: Panel name -> its module (imported on first use: ipywidgets only then).
_PANELS = {
    "ResultsBrowser": "browser",
    "RunMonitor": "monitor",
    "TrainingLauncher": "launcher",
}

__all__ = [
    "ResultsBrowser",
    "RunMonitor",
    "ServiceError",
    "TrainingLauncher",
    "download_artifacts",
    "load_model",
]


def __getattr__(name: str) -> Any:
    if name in _PANELS:
        return getattr(importlib.import_module(f".{_PANELS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PANELS})
