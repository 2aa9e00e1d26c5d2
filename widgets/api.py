"""What the panels show of the service: readable errors, status lines, dashboard links.

The panels call the service only through a :class:`~latticehub.client.TrackingClient` (by
default built from the notebook's environment: ``JUPYTERHUB_API_URL`` /
``JUPYTERHUB_API_TOKEN``, or ``LATTICEHUB_TRACKING_URL`` / ``LATTICEHUB_TOKEN``); this module
holds no endpoint of its own. Whatever goes wrong (an expired token, a refused request, a
job limit, an unreachable service) comes out as one :class:`ServiceError` whose ``message``
is meant for the user (:func:`describe`, :func:`service_errors`); panels show it with
:func:`status_html`, never as a traceback. Nothing here imports ipywidgets.
"""

from __future__ import annotations

import html
import os
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

from latticehub.client import TrackingAPIError, TrackingClient
from latticehub.client.errors import BAD_ANSWER, TRANSIENT_STATUSES

#: Statuses after which a retry may succeed (service restarting, proxy hiccup, rate limit).
TRANSIENT = TRANSIENT_STATUSES


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
        exc: a :class:`TrackingAPIError` (a refusal, or code ``BAD_ANSWER``: an answer
            that is not JSON or a damaged download), an ``OSError`` (unreachable, timeout),
            a ``ValueError`` (an answer that is not JSON) or a ``RuntimeError`` (no service
            configured in the environment).
        url: the service address, named in "cannot reach" messages.
    """
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, TrackingAPIError):
        status, detail = exc.status, exc.message
        if exc.code == BAD_ANSWER:  # a proxy's page, a damaged download: no real answer
            return ServiceError(f"{detail[:1].upper()}{detail[1:]}.", None, BAD_ANSWER, detail)
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


@contextmanager
def service_errors(client: TrackingClient) -> Iterator[None]:
    """Turn what a client call raises into a :class:`ServiceError` (``with`` block).

    Example::

        with service_errors(client):
            job = client.get_job(job_id)
    """
    try:
        yield
    except (TrackingAPIError, OSError, ValueError) as e:
        raise describe(e, client.url) from None


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
