"""Thin calls to the ``experiments`` service for the panels, with errors made readable.

Every panel talks to the service only through these functions, with a
:class:`~latticehub.client.TrackingClient` (by default built from the notebook's
environment: ``JUPYTERHUB_API_URL`` / ``JUPYTERHUB_API_TOKEN``, or ``LATTICEHUB_TRACKING_URL`` /
``LATTICEHUB_TOKEN``). Whatever goes wrong (an expired token, a refused request, a job
limit, an unreachable service) comes out as one :class:`ServiceError` whose ``message`` is
meant for the user; panels show it with :func:`status_html`, never as a traceback.
"""

from __future__ import annotations

import hashlib
import html
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from latticehub.client import TrackingAPIError, TrackingClient, _api_error

#: Longest long-poll wait the panels ask for, seconds (the service allows up to 60).
LONG_POLL_S = 25.0
#: Bytes read per chunk when downloading an artifact.
CHUNK = 1 << 20
#: Statuses after which a retry may succeed (service restarting, proxy hiccup, rate limit).
TRANSIENT = frozenset({429, 500, 502, 503, 504})


class ServiceError(Exception):
    """A request to the service failed; ``message`` says what happened and what to do.

    Attributes:
        status: the HTTP status, or ``None`` when there was no answer at all.
        code: the service's error code (``JOB_LIMIT_EXCEEDED`` ...), or a local one
            (``UNREACHABLE``, ``NO_SERVICE``, ``BAD_ANSWER``).
        message: a sentence for the user (plain text; escape it before rendering).
        detail: the service's own message, when it sent one.
    """

    def __init__(self, message: str, status: int | None = None, code: str = "", detail: str = ""):
        super().__init__(message)
        self.message, self.status, self.code, self.detail = message, status, code, detail

    @property
    def transient(self) -> bool:
        """Whether trying again later may help (no answer, 429 or 5xx)."""
        return self.status is None or self.status in TRANSIENT


def describe(exc: BaseException, url: str = "") -> ServiceError:
    """Turn what a request raised into a :class:`ServiceError` with a readable message.

    Args:
        exc: a :class:`TrackingAPIError`, an ``OSError`` (unreachable, timeout), a
            ``ValueError`` (an answer that is not JSON) or a ``RuntimeError`` (no service
            configured in the environment).
        url: the service address, named in "cannot reach" messages.
    """
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, TrackingAPIError):
        status, detail = exc.status, exc.message
        if status == 401:
            text = (
                "Your Hub token was refused (expired or invalid). Restart your notebook server "
                "from the Hub control panel to get a fresh one, then run this cell again."
            )
        elif status == 403:
            text = f"Not allowed: {detail}"
        elif status == 404:
            text = f"Not found (or not visible to you): {detail}"
        elif status == 409:
            text = f"Not possible now: {detail}"
        elif status == 429:
            text = (
                f"Job limit reached: {detail}. Wait for one of the group's jobs to end or "
                "cancel one, then launch again (your settings are kept)."
            )
        elif status == 503 and exc.code == "EXECUTOR_UNAVAILABLE":
            text = f"The service cannot run this: {detail}"
        elif status >= 500:
            text = (
                f"The experiments service failed (HTTP {status}): {detail}. Try again in a "
                "minute; if it keeps failing, tell the admins."
            )
        else:
            text = f"The service refused the request: {detail}"
        return ServiceError(text, status, exc.code, detail)
    if isinstance(exc, RuntimeError):  # default_url / default_token: nothing configured
        return ServiceError(
            f"No experiments service configured: {exc}. Inside JupyterHub this comes from "
            "the server's environment; elsewhere pass client=TrackingClient(url, token).",
            None,
            "NO_SERVICE",
        )
    if isinstance(exc, OSError):
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        return ServiceError(
            f"Cannot reach the experiments service at {url or 'its address'} ({reason}). Is "
            "the Hub up? Try again in a minute.",
            None,
            "UNREACHABLE",
        )
    if isinstance(exc, ValueError):
        return ServiceError(
            f"The service sent an answer that is not JSON ({exc}); a proxy or login page may be "
            "in the way. Check the service address.",
            None,
            "BAD_ANSWER",
        )
    raise TypeError(f"cannot describe {type(exc).__name__}") from exc


def make_client(client: TrackingClient | None = None) -> TrackingClient:
    """``client``, or one built from the environment as :class:`TrackingClient` does.

    Raises:
        ServiceError: when the environment names no service or token.
    """
    if client is not None:
        return client
    try:
        return TrackingClient()
    except RuntimeError as e:
        raise describe(e) from None


def call(
    client: TrackingClient, method: str, path: str, body: Any = None, params: dict | None = None
) -> Any:
    """``client.request`` with every failure turned into a :class:`ServiceError`."""
    try:
        return client.request(method, path, body, params)
    except (TrackingAPIError, OSError, ValueError) as e:
        raise describe(e, client.url) from None


# -- jobs ---------------------------------------------------------------------------------
def job_options(client: TrackingClient) -> dict[str, dict]:
    """Per group: the executors, partitions and maxima the caller may use."""
    return call(client, "GET", "/jobs/options")["groups"]


def submit_job(client: TrackingClient, body: dict) -> dict:
    """Submit ``{"project", "config", "resources", "name"?, "group"?}``; the new job."""
    return call(client, "POST", "/jobs", body)


def get_job(client: TrackingClient, job_id: str) -> dict:
    """One job (state, reason, node ...)."""
    return call(client, "GET", f"/jobs/{job_id}")


def cancel_job(client: TrackingClient, job_id: str) -> dict:
    """Ask the service to cancel a job; the job with its new reason."""
    return call(client, "DELETE", f"/jobs/{job_id}")


# -- runs ---------------------------------------------------------------------------------
def get_run(client: TrackingClient, run_id: str) -> dict:
    """One run with params, tags and latest metrics."""
    return call(client, "GET", f"/runs/{_segment(run_id)}")


def run_updates(client: TrackingClient, run_id: str, params: dict[str, Any]) -> dict:
    """One long-poll round of ``/runs/{id}/updates`` (see docs/live.md)."""
    return call(client, "GET", f"/runs/{_segment(run_id)}/updates", params=params)


def long_poll_wait(client: TrackingClient) -> float:
    """The ``wait`` to ask for: :data:`LONG_POLL_S`, shorter than the client's timeout."""
    return max(0.0, min(LONG_POLL_S, float(client.timeout) - 5))


def search_runs_page(
    client: TrackingClient,
    project_id: int,
    *,
    filter: str = "",
    order_by: list[str] | None = None,
    max_results: int = 50,
    page_token: str | None = None,
) -> tuple[list[dict], str | None]:
    """One page of a project's runs: ``(runs, next_page_token)``."""
    params: dict[str, Any] = {"project": project_id, "max_results": max_results}
    if filter:
        params["filter"] = filter
    if order_by:
        params["order_by"] = order_by
    if page_token:
        params["page_token"] = page_token
    page = call(client, "GET", "/runs", params=params)
    return page["items"], page["_pagination"]["next_token"]


def find_project(client: TrackingClient, project: str | int) -> dict:
    """A project the caller may read, by id or exact name (never creates one).

    Raises:
        ServiceError: 404 when there is no such project (or it is not visible).
    """
    if isinstance(project, int) and not isinstance(project, bool):
        return call(client, "GET", f"/projects/{project}")
    params: dict[str, Any] = {"name_like": project, "max_results": 100}
    for _ in range(100):  # name_like is a pattern: look for the exact name
        page = call(client, "GET", "/projects", params=params)
        for item in page["items"]:
            if item["name"] == project:
                return item
        token = page["_pagination"]["next_token"]
        if not token:
            break
        params["page_token"] = token
    raise ServiceError(
        f"No project called {project!r} that you can see: check the name (or pass its id).",
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


def project_names(client: TrackingClient, limit: int = 200) -> list[str]:
    """Names of (up to ``limit``) projects the caller can see, for pickers."""
    page = call(client, "GET", "/projects", params={"max_results": limit})
    return sorted(item["name"] for item in page["items"])


def metric_points(client: TrackingClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """A metric's whole history as ``[(step, value)]`` (pages followed)."""
    from latticehub.client import metric_history

    try:
        frame = metric_history(run_id, key, client=client)
    except (TrackingAPIError, OSError, ValueError) as e:
        raise describe(e, client.url) from None
    return list(zip(frame["step"].astype(int).tolist(), frame["value"].tolist(), strict=True))


# -- artifacts ----------------------------------------------------------------------------
def list_artifacts(client: TrackingClient, run_id: str, prefix: str = "") -> list[dict]:
    """The run's artifacts (``path``, ``size``, ``sha256``) under ``prefix``."""
    params = {"prefix": prefix} if prefix else None
    return call(client, "GET", f"/runs/{_segment(run_id)}/artifacts", params=params)["items"]


def download_artifact(client: TrackingClient, run_id: str, path: str, dest: Path) -> Path:
    """Download one artifact to the file ``dest`` (streamed, sha256-checked, atomic).

    Raises:
        ServiceError: refused, missing, unreachable, or the content did not match its hash.
    """
    url = (
        f"{client.url}/api/v1/runs/{_segment(run_id)}/artifacts/"
        f"{urllib.parse.quote(path.lstrip('/'))}"
    )
    req = urllib.request.Request(url, method="GET")
    req.add_header("Authorization", f"token {client.token}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(req, timeout=client.timeout) as resp:
                    expected = resp.headers.get("X-Content-SHA256")
                    while chunk := resp.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as e:
                raise describe(_api_error(e), client.url) from None
            except OSError as e:
                raise describe(e, client.url) from None
        if expected and digest.hexdigest() != expected:
            raise ServiceError(
                f"The download of {path} was damaged (sha256 mismatch): try again.",
                None,
                "BAD_ANSWER",
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def download_all(client: TrackingClient, run_id: str, dest: Path, prefix: str = "") -> list[Path]:
    """Download the run's artifacts under ``prefix`` into the directory ``dest``."""
    dest = Path(dest)
    written = []
    for item in list_artifacts(client, run_id, prefix):
        target = (dest / item["path"]).resolve()
        if not target.is_relative_to(dest.resolve()):  # the service refuses such paths anyway
            continue
        written.append(download_artifact(client, run_id, item["path"], target))
    return written


# -- presentation -------------------------------------------------------------------------
_COLORS = {
    "info": "#555",
    "ok": "#1a7f37",
    "busy": "#0969da",
    "warn": "#9a6700",
    "error": "#cf222e",
}


def status_html(message: str, level: str = "info") -> str:
    """A one-line status message as HTML (the text is escaped)."""
    if not message:
        return ""
    color = _COLORS.get(level, _COLORS["info"])
    return (
        f'<div class="lh-status-text lh-{html.escape(level)}" style="color:{color}">'
        f"{html.escape(message)}</div>"
    )


def dashboard_url(client: TrackingClient, run_id: str) -> str:
    """The dashboard page of a run, as a link that works from the notebook's browser.

    Inside a single-user server the client talks to an internal address (the Hub's, or the
    service's own that the Hub put in ``LATTICEHUB_TRACKING_URL``), which the browser may
    not reach: the link is then the service's path on the page's own origin (under
    ``JUPYTERHUB_BASE_URL``). Otherwise it is ``<service>/runs/{id}``.
    """
    runs = f"runs/{_segment(run_id)}"
    api = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
    base = os.environ.get("JUPYTERHUB_BASE_URL")
    if base is not None:
        url = client.url.rstrip("/")
        if api.endswith("/hub/api") and url.startswith(api[: -len("/hub/api")]):
            rest = url[len(api) - len("/hub/api") :].lstrip("/")
            return f"{base.rstrip('/')}/{rest}/{runs}"
        tracking = os.environ.get("LATTICEHUB_TRACKING_URL", "").rstrip("/")
        if tracking and url == tracking:  # the service direct: its path is the public one
            return f"{urllib.parse.urlsplit(url).path.rstrip('/')}/{runs}"
    return f"{client.url}/{runs}"


def _segment(value: str) -> str:
    """A value quoted for use as one URL path segment."""
    return urllib.parse.quote(str(value), safe="")
