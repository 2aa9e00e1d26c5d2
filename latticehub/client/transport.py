"""How the client moves bytes: the :class:`Transport` seam between the endpoints and urllib.

The endpoint methods build an :class:`HTTPRequest` and read an :class:`Answer`; only
:class:`UrllibTransport` touches the network. Tests pass a transport that answers from a
script instead (:mod:`latticehub.client.testing`). A transport returns answers of every
status (4xx and 5xx too): mapping them to :class:`~.errors.TrackingAPIError` happens once,
in :class:`~.base.ClientBase`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol


@dataclass
class HTTPRequest:
    """One request as the client wants it sent.

    Attributes:
        method: ``GET``, ``POST`` ...
        url: the full URL, query included.
        headers: header name -> value (``Authorization`` included).
        body: bytes, an open binary file (streamed; give ``Content-Length``) or ``None``.
    """

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | BinaryIO | None = None


class Answer(Protocol):
    """An HTTP answer being read (a context manager that closes it)."""

    status: int
    headers: Mapping[str, str]

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the body (all of it for -1); ``b""`` at the end."""

    def readline(self) -> bytes:
        """The next line of the body, with its newline (``b""`` at the end)."""

    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> Answer: ...

    def __exit__(self, *exc: object) -> None: ...


class Transport(Protocol):
    """Sends requests: ``open(request, timeout)`` returns the answer, whatever its status.

    Raises ``OSError`` (``urllib.error.URLError``, ``TimeoutError``, ``ConnectionError``)
    when there is no answer at all.
    """

    def open(self, request: HTTPRequest, timeout: float) -> Answer:
        """Send ``request``; the answer (status >= 400 included)."""


class _UrllibAnswer:
    """An :class:`Answer` over what ``urlopen`` returned (or the ``HTTPError`` it raised)."""

    def __init__(self, status: int, headers: Any, body: Any, reason: str = ""):
        self.status, self.headers, self._body, self.reason = status, headers, body, reason

    def read(self, size: int = -1) -> bytes:
        if self._body is None:
            return b""
        # http.client reads a chunked body wrongly with read(-1): say "all" as read()
        return self._body.read() if size < 0 else self._body.read(size)

    def readline(self) -> bytes:
        return self._body.readline() if self._body is not None else b""

    def close(self) -> None:
        if self._body is not None:
            self._body.close()

    def __enter__(self) -> _UrllibAnswer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UrllibTransport:
    """The standard library's ``urllib.request`` (the default; no dependency)."""

    def open(self, request: HTTPRequest, timeout: float) -> Answer:
        """Send ``request`` with ``urlopen``; an ``HTTPError`` becomes an answer too."""
        req = urllib.request.Request(
            request.url, data=request.body, method=request.method, headers=request.headers
        )
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:  # an answer >= 400: the client reads its body
            # read through the error itself: its file closes when the error is collected
            return _UrllibAnswer(e.code, e.headers, e, str(e.reason))
        return _UrllibAnswer(resp.status, resp.headers, resp, resp.reason)
