"""The client's core: where the service is, the token, one request, errors and pages."""

from __future__ import annotations

import gzip
import json
import os
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NamedTuple

from .errors import BAD_ANSWER, TrackingAPIError
from .transport import Answer, HTTPRequest, Transport, UrllibTransport

#: JSON bodies over this many bytes are sent gzip-compressed.
GZIP_OVER = 64 * 1024
#: Longest long-poll wait asked for, seconds (the service allows up to 60).
LONG_POLL_S = 25.0


def default_url() -> str:
    """``LATTICEHUB_TRACKING_URL``, or the Hub's experiments service seen from a server."""
    url = os.environ.get("LATTICEHUB_TRACKING_URL")
    if url:
        return url.rstrip("/")
    api = os.environ.get("JUPYTERHUB_API_URL")
    if api and api.rstrip("/").endswith("/hub/api"):
        return api.rstrip("/")[: -len("/hub/api")] + "/services/experiments"
    raise RuntimeError(
        "no tracking service: set LATTICEHUB_TRACKING_URL (e.g. "
        "http://127.0.0.1:8000/services/experiments) and LATTICEHUB_TOKEN"
    )


def default_token() -> str:
    """``LATTICEHUB_TOKEN`` or ``JUPYTERHUB_API_TOKEN``."""
    token = os.environ.get("LATTICEHUB_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN")
    if not token:
        raise RuntimeError("no token: set LATTICEHUB_TOKEN (a Hub API token)")
    return token


def segment(value: object) -> str:
    """``value`` quoted as one URL path segment (``"a/b"`` -> ``"a%2Fb"``)."""
    return urllib.parse.quote(str(value), safe="")


def query(**params: Any) -> dict[str, Any]:
    """The query parameters that are set (``None``, ``""`` and empty lists are left out)."""
    return {k: v for k, v in params.items() if v is not None and v != "" and v != []}


def decode(payload: bytes, status: int, what: str) -> Any:
    """The JSON of an answer's body (``None`` for an empty one).

    Raises:
        TrackingAPIError: code ``BAD_ANSWER`` when it is not JSON (a proxy or login page).
    """
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError as e:
        raise TrackingAPIError(
            status,
            BAD_ANSWER,
            f"the answer to {what} is not JSON ({e}): a proxy or login page may be in the "
            "way; check the service address",
        ) from None


class Page(NamedTuple):
    """One page of a listing: its items and the token of the next page (``None``: last)."""

    items: list[dict[str, Any]]
    next_token: str | None


def next_token(body: dict[str, Any]) -> str | None:
    """The next page's token of a listing (``_pagination.next_token`` or ``next_page_token``)."""
    token = body.get("next_page_token") or (body.get("_pagination") or {}).get("next_token")
    return str(token) if token else None


def follow(fetch: Callable[[str | None], Page]) -> Iterator[dict[str, Any]]:
    """Every item of a paged listing: ``fetch(token)`` from ``None`` until no next token."""
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page.items
        if not page.next_token:
            return
        token = page.next_token


class ClientBase:
    """Where the service is, how to reach it, and one JSON request to its native API.

    Args:
        url: the service's base URL (default :func:`default_url`), e.g.
            ``http://127.0.0.1:8000/services/experiments``.
        token: a Hub API token (default :func:`default_token`).
        timeout: seconds to wait for an answer (a long-poll waits longer by its ``wait``).
        transport: what sends requests (default :class:`~.transport.UrllibTransport`).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 30,
        *,
        transport: Transport | None = None,
    ):
        self.url = (url or default_url()).rstrip("/")
        self.token = token or default_token()
        self.timeout = timeout
        self.transport: Transport = transport or UrllibTransport()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- sending ---------------------------------------------------------------------------
    def api_url(self, path: str, params: dict[str, Any] | None = None) -> str:
        """The URL of ``path`` under ``/api/v1`` with ``params`` (lists repeat the key)."""
        url = f"{self.url}/api/v1{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        return url

    def open(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        """Send a request and return the open answer (for streamed bodies); close it after.

        Raises:
            TrackingAPIError: for an answer >= 400 (with the service's code and message).
            OSError: when the service cannot be reached.
        """
        request = HTTPRequest(method, self.api_url(path, params), {}, body)
        request.headers["Authorization"] = f"token {self.token}"
        request.headers.update(headers or {})
        answer = self.transport.open(request, self.timeout if timeout is None else timeout)
        if answer.status >= 400:
            with answer:
                payload = answer.read()
            raise TrackingAPIError.from_answer(answer.status, payload, _reason(answer))
        return answer

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Call the API with a JSON body; returns the decoded JSON (``None`` for no body).

        The endpoint methods below are built on this; it stays public for endpoints that
        have none yet, and for the spool's replay (``request(method, path, body)``).

        Raises:
            TrackingAPIError: for an answer >= 400, or one that is not JSON
                (code ``BAD_ANSWER``: a proxy or login page in the way).
            OSError: when the service cannot be reached (callers may spool).
        """
        data = None if body is None else json.dumps(body, allow_nan=False).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if data is not None and len(data) > GZIP_OVER:
            # a big body (a compact batch): a fast gzip costs less than sending it plain
            data = gzip.compress(data, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        with self.open(
            method, path, params=params, body=data, headers=headers, timeout=timeout
        ) as answer:
            payload = answer.read()
            status = answer.status
        return decode(payload, status, f"{method} {path}")

    def page(self, path: str, params: dict[str, Any]) -> Page:
        """One page of a token-paged listing (``{"items", "_pagination": {"next_token"}}``)."""
        body = self.request("GET", path, params=params)
        return Page(body["items"], next_token(body))

    def long_poll_wait(self) -> float:
        """The ``wait`` a long-poll asks for: :data:`LONG_POLL_S`, below the timeout."""
        return max(0.0, min(LONG_POLL_S, float(self.timeout) - 5))


def _reason(answer: Answer) -> str:
    return str(getattr(answer, "reason", "") or "")
