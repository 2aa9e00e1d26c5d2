"""Notebook panels (ipywidgets) of latticehub: launch, watch and compare flow training inline.

- :class:`TrainingLauncher` -- a form for a ``flows.train`` job; becomes its monitor.
- :class:`RunMonitor` -- status, progress, live metric plots and output of one run.
- :class:`ResultsBrowser` -- a project's runs: filter, sort, page, compare, export.
- :func:`load_model`, :func:`download_artifacts` -- a run's trained flow and files.

They talk only to the ``experiments`` service, with the notebook's Hub token (see
``docs/widgets.md``); each accepts ``client=TrackingClient(url, token)``.
"""

from .api import ServiceError
from .artifacts import download_artifacts, load_model
from .browser import ResultsBrowser
from .launcher import TrainingLauncher
from .monitor import RunMonitor

__all__ = [
    "ResultsBrowser",
    "RunMonitor",
    "ServiceError",
    "TrainingLauncher",
    "download_artifacts",
    "load_model",
]
