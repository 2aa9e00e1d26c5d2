"""Tracking client for notebooks, widgets and batch jobs (standard library only).

    from latticehub.client import start_run

    with start_run(project="phi4-L8", config={"L": 8, "lr": 1e-3}) as run:
        for step in range(1000):
            run.log_metrics({"loss": loss, "ess": ess}, step=step)

The service URL and token come from ``LATTICEHUB_TRACKING_URL`` / ``LATTICEHUB_TOKEN``
or, inside a notebook server, from JupyterHub's ``JUPYTERHUB_API_URL`` /
``JUPYTERHUB_API_TOKEN``. Writes are batched by a background thread; when the service
cannot be reached they are spooled to a file and replayed later (``spool.py``).

Modules: :mod:`.api` (:class:`TrackingClient`, one method per endpoint, built from
:mod:`.projects`, :mod:`.runs`, :mod:`.artifacts` and :mod:`.jobs` on :mod:`.base`),
:mod:`.transport` (the seam to urllib), :mod:`.errors`, :mod:`.active` (:func:`start_run`),
:mod:`.frames` (DataFrames), :mod:`.spool`, :mod:`.environment`, :mod:`.testing` (a scripted
transport for tests).
"""

from __future__ import annotations

from .active import ActiveRun, flatten, start_run
from .api import TrackingClient
from .base import Page, default_token, default_url
from .errors import TrackingAPIError
from .frames import metric_history, runs_dataframe
from .spool import sync
from .transport import HTTPRequest, Transport, UrllibTransport

__all__ = [
    "ActiveRun",
    "HTTPRequest",
    "Page",
    "TrackingAPIError",
    "TrackingClient",
    "Transport",
    "UrllibTransport",
    "default_token",
    "default_url",
    "flatten",
    "metric_history",
    "runs_dataframe",
    "start_run",
    "sync",
]
