"""A scripted :class:`~.transport.Transport` for tests: canned answers, recorded requests.

    transport = ScriptedTransport()
    transport.add("GET", "/runs/abc", {"id": "abc", "status": "RUNNING"})
    transport.add("DELETE", "/jobs/.*", 409, {"error_code": "CONFLICT", "message": "ended"})
    client = TrackingClient("http://svc", "tok", transport=transport)
    client.get_run("abc")
    transport.requests[-1].method == "GET"

Like httpx's ``MockTransport``: nothing leaves the process.
"""

from __future__ import annotations

import io
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .transport import HTTPRequest

Reply = Callable[["Recorded"], "tuple[int, Any] | tuple[int, Any, Mapping[str, str]]"]


@dataclass
class Recorded:
    """A request as the transport saw it.

    Attributes:
        method: the HTTP method.
        path: the path below ``/api/v1`` (``/runs/abc``), unquoted.
        params: query parameters (name -> list of values).
        headers: the request's headers.
        body: the body's bytes (a streamed file is read).
    """

    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    replies: list[Reply | tuple[int, Any, Mapping[str, str]]] = field(default_factory=list)


class ScriptedAnswer:
    """An answer with a fixed body (implements :class:`~.transport.Answer`)."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str] | None = None):
        self.status, self.headers, self.reason = status, dict(headers or {}), ""
        self._body = io.BytesIO(body)

    def read(self, size: int = -1) -> bytes:
        """Read the body."""
        return self._body.read(size)

    def readline(self) -> bytes:
        """Read a line of the body."""
        return self._body.readline()

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> ScriptedAnswer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ScriptedTransport:
    """Answers each request from the first route that matches its method and path.

    A route's replies are used in turn, the last one again and again. A request that no
    route matches gets 404 ``NO_ROUTE`` (and is recorded too). ``OSError`` instances as
    replies are raised, as an unreachable service would.

    Attributes:
        requests: every request sent, oldest first.
    """

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: list[_Route] = []

    def add(self, method: str, path: str, *replies: Any) -> ScriptedTransport:
        """Answer ``method`` on paths matching the regex ``path`` (below ``/api/v1``).

        Each reply is a JSON-able body (status 200), ``(status, body)``,
        ``(status, body, headers)``, a callable ``(Recorded) -> such a tuple``, or an
        ``OSError`` to raise. A ``bytes`` body is sent as it is.
        """
        route = _Route(method.upper(), re.compile(path + r"\Z"))
        for reply in replies or ({},):
            if callable(reply) or isinstance(reply, OSError):
                route.replies.append(reply)
            elif isinstance(reply, tuple) and reply and isinstance(reply[0], int):
                status, body, *rest = reply
                route.replies.append((status, body, rest[0] if rest else {}))
            else:
                route.replies.append((200, reply, {}))
        self._routes.append(route)
        return self

    def open(self, request: HTTPRequest, timeout: float) -> ScriptedAnswer:
        """Record ``request`` and answer it from the routes."""
        parts = urllib.parse.urlsplit(request.url)
        path = urllib.parse.unquote(parts.path.split("/api/v1", 1)[-1])
        body = request.body
        data = body.read() if body is not None and hasattr(body, "read") else (body or b"")
        recorded = Recorded(request.method, path, urllib.parse.parse_qs(parts.query),
                            dict(request.headers), data)  # fmt: skip
        self.requests.append(recorded)
        for route in self._routes:
            if route.method == request.method and route.pattern.match(path):
                reply = route.replies.pop(0) if len(route.replies) > 1 else route.replies[0]
                if isinstance(reply, OSError):
                    raise reply
                status, payload, headers = _normalise(reply(recorded) if callable(reply) else reply)
                return ScriptedAnswer(status, payload, headers)
        missing = {"error_code": "NO_ROUTE", "message": f"no route for {request.method} {path}"}
        return ScriptedAnswer(404, json.dumps(missing).encode())


def _normalise(reply: tuple) -> tuple[int, bytes, Mapping[str, str]]:
    status, body, *rest = reply
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return status, payload, rest[0] if rest else {}
