"""``TrackingClient``: one typed method per endpoint of the experiments service's native API."""

from __future__ import annotations

from .artifacts import ArtifactsAPI
from .jobs import JobsAPI
from .projects import ProjectsAPI
from .runs import RunsAPI


class TrackingClient(ProjectsAPI, RunsAPI, ArtifactsAPI, JobsAPI):
    """JSON client of the native API (``<service>/api/v1``), standard library only.

    One method per endpoint, grouped by resource: projects (:class:`.projects.ProjectsAPI`),
    runs, batches, logs, metric history and live updates (:class:`.runs.RunsAPI`), artifacts
    and the registry (:class:`.artifacts.ArtifactsAPI`), jobs and storage
    (:class:`.jobs.JobsAPI`). Listings come as one :class:`~.base.Page` (``items``,
    ``next_token``) or as a generator over every page (``search_runs``, ``iter_projects``,
    ``list_jobs``). :meth:`request` calls any path directly.

    Every method raises :class:`~.errors.TrackingAPIError` (``status``, ``code``,
    ``message``, ``transient``) when the service refuses or answers something unusable, and
    ``OSError`` when it cannot be reached.

    Args:
        url: the service's base URL (default: ``$LATTICEHUB_TRACKING_URL``, or the Hub's
            ``experiments`` service from ``$JUPYTERHUB_API_URL``).
        token: a Hub API token (default: ``$LATTICEHUB_TOKEN`` or ``$JUPYTERHUB_API_TOKEN``).
        timeout: seconds to wait for an answer.
        transport: what sends requests (default: urllib; tests pass a scripted one).

    Example::

        client = TrackingClient()
        project = client.project("phi4-scan", group="lqcd")
        for run in client.search_runs(project["id"], filter="metrics.loss < 0.5"):
            print(run["id"], run["metrics"]["loss"]["value"])
    """
