"""Request-body limits for the services: an oversize body gets 413 with a JSON error, unkept.

Tornado reads a request's whole body into memory before the handler runs, up to the server's
``max_body_size``, unless the handler streams it (``@web.stream_request_body``); a body over
that size gets a bare ``400`` without a word of why. So that no caller, authenticated or not,
can make a service hold a large body, and every caller learns what the limit is:

- each service listens with ``max_body_size`` set to its small JSON limit (a few MB), the
  backstop for whatever this module does not see;
- a :class:`BodyGate` stands in front of every request (:class:`BodyLimitedApplication`, or
  :class:`BodyLimited` around an existing application). A body over the route's limit is
  answered ``413`` with ``{"error_code": "RESOURCE_LIMIT_EXCEEDED", "message", "status"}``
  (the services' error shape), from the ``Content-Length`` header before a byte of the body
  is read or, for a chunked body, as soon as the limit is passed. What it refuses is never
  handed to the application;
- a handler that takes large bodies (artifact uploads) streams them and names the methods in
  its ``streamed_methods`` class attribute; the gate leaves those requests to it. Such a
  handler authenticates and authorises in ``prepare()`` (tornado runs it before reading the
  body) and only then raises the request's limit with
  ``self.request.connection.set_max_body_size(...)``.

A refusal is answered at once, with ``Connection: close``, and the rest of the body is then
read and dropped for a while (:class:`DrainAfterAnswer`). Closing a connection while its
request still arrives makes the kernel reset it: configurable-http-proxy, in front of every
service, then answers 503 instead of passing the refusal on, and a client that sends the
whole body before it reads (``urllib``, talking to the service directly) sees a reset instead
of the answer. Dropping costs network time, not memory: at most ``drain`` bytes or
``drain_timeout`` seconds, after which the connection is closed. ``Connection: close``
because the proxy passes it on and then ends the client's connection once the answer is
through; without it, the proxy stops forwarding the body but keeps the client waiting for
its keep-alive timeout (5 s) before the answer arrives. (A client that sends a large body
through the proxy and reads only afterwards still sees the proxy's reset: that is the
proxy's way.)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from tornado import httputil, web
from tornado.ioloop import IOLoop
from tornado.routing import PathMatches

#: The connection's limit while a body is counted here instead: tornado would refuse a chunked
#: body, with a bare 400, from the sizes its chunks *announce*, before the gate could answer.
COUNTED_HERE = 2**62
#: Default bytes of a refused body read and dropped after the answer.
DEFAULT_DRAIN = 64 * 1024 * 1024
#: Default seconds a refused body is read and dropped after the answer.
DEFAULT_DRAIN_TIMEOUT = 10.0
#: The ``error_code`` of a refused body (MLflow's and the stores' name for a limit).
RESOURCE_LIMIT_EXCEEDED = "RESOURCE_LIMIT_EXCEEDED"

access_log = logging.getLogger("tornado.access")


def declared_length(headers: httputil.HTTPHeaders) -> int | None:
    """The body size a request declares (``Content-Length``), or None (chunked, or none).

    A malformed value gives None too: tornado itself refuses it when it reads the body.
    """
    raw = headers.get("Content-Length")
    if raw is None:
        return None
    first = raw.split(",")[0].strip()
    return int(first) if first.isdigit() else None


def is_chunked(headers: httputil.HTTPHeaders) -> bool:
    """Whether the body comes with ``Transfer-Encoding: chunked`` (its size unknown ahead)."""
    return "chunked" in headers.get("Transfer-Encoding", "").lower()


def limit_message(limit: int, size: int | None = None, hint: str = "") -> str:
    """The words of a 413: the size (when known), the limit, and what to do instead."""
    what = f"Request body of {size} bytes is" if size is not None else "Request body is"
    return f"{what} over this service's limit of {limit} bytes{hint}"


def streamed_methods(handler_class: Any) -> frozenset[str]:
    """The HTTP methods whose bodies ``handler_class`` streams and limits itself."""
    return frozenset(getattr(handler_class, "streamed_methods", ()))


def waits_for_continue(headers: httputil.HTTPHeaders) -> bool:
    """Whether the client sends the body only after ``100 Continue`` (``Expect``).

    A refusal then ends the exchange at once: the client sends no body, and tornado would
    write its ``100 Continue`` after an answer that has not been finished.
    """
    return headers.get("Expect", "").lower() == "100-continue"


def allow_draining(connection: Any, declared: int | None) -> None:
    """Let tornado read a refused body (to drop it) instead of answering a bare 400 itself.

    A body is only ever read this far after its answer is decided, and what is read is
    counted by :class:`DrainAfterAnswer` and dropped. ``connection`` is tornado's
    ``HTTP1Connection`` (the ``HTTPConnection`` interface has no ``set_max_body_size``).
    """
    connection.set_max_body_size(declared if declared is not None else COUNTED_HERE)


class DrainAfterAnswer:
    """After a refusal has been answered, read and drop the rest of the body for a while.

    The exchange ends (``end()``) when the body is complete, when more than ``drain`` bytes
    arrived, or after ``timeout`` seconds (in the last two cases tornado closes the
    connection, as the request is not over).

    Args:
        end: finishes the exchange (``connection.finish`` or ``RequestHandler.finish``).
        drain: bytes to read and drop at most, e.g. 64 MiB; 0 ends at once.
        timeout: seconds to wait for the rest at most, e.g. 10.
    """

    def __init__(self, end: Callable[[], Any], *, drain: int, timeout: float):
        self._end = end
        self._left = drain
        self._done = False
        self._timer = IOLoop.current().call_later(timeout, self.stop) if drain > 0 else None
        if drain <= 0:
            self.stop()

    def received(self, size: int) -> None:
        """Drop ``size`` more bytes; end once more than ``drain`` arrived."""
        self._left -= size
        if self._left < 0:
            self.stop()

    def stop(self) -> None:
        """End the exchange now (once)."""
        self.cancel()
        if not self._done:
            self._done = True
            self._end()

    def cancel(self) -> None:
        """Forget the timer (the exchange ended otherwise)."""
        if self._timer is not None:
            IOLoop.current().remove_timeout(self._timer)
            self._timer = None


class BodyGate(httputil.HTTPMessageDelegate):
    """Stands in front of one request's delegate and refuses a body over the route's limit.

    Args:
        inner: the application's delegate for the request.
        connection: the request's connection; refusals are written there.
        limit_for: the limit in bytes for a request line, or None where the route's handler
            streams the body and limits it itself.
        drain: bytes of a refused body read and dropped after the answer, e.g. 64 MiB.
        drain_timeout: seconds that may take at most, e.g. 10.
        hint: appended to the message: what to send instead, e.g. ``": split the batch"``.
    """

    def __init__(
        self,
        inner: httputil.HTTPMessageDelegate,
        connection: httputil.HTTPConnection,
        *,
        limit_for: Callable[[httputil.RequestStartLine], int | None],
        drain: int = DEFAULT_DRAIN,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        hint: str = "",
    ):
        self._inner = inner
        self._connection: Any = connection  # an HTTP1Connection: it has set_max_body_size
        self._limit_for = limit_for
        self._drain = drain
        self._drain_timeout = drain_timeout
        self._hint = hint
        self._limit: int | None = None
        self._declared: int | None = None
        self._received = 0
        self._refused: DrainAfterAnswer | None = None
        self._request = ""
        self._waits = False

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Any:
        """Refuse a declared oversize body here, before any of it is read."""
        assert isinstance(start_line, httputil.RequestStartLine)
        self._request = f"{start_line.method} {start_line.path.partition('?')[0]}"
        self._waits = waits_for_continue(headers)
        self._limit = self._limit_for(start_line)
        if self._limit is None:
            return self._inner.headers_received(start_line, headers)
        self._declared = declared_length(headers)
        if self._declared is not None and self._declared > self._limit:
            self._refuse(before_body=True)
            return None
        if self._declared is None and is_chunked(headers):
            self._connection.set_max_body_size(COUNTED_HERE)
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        """Hand on a chunk within the limit; past the limit, refuse and drop it."""
        if self._limit is None:
            return self._inner.data_received(chunk)
        if self._refused is None:
            self._received += len(chunk)
            if self._received <= self._limit:
                return self._inner.data_received(chunk)
            self._refuse(before_body=False)
        assert self._refused is not None
        self._refused.received(len(chunk))
        return None

    def finish(self) -> None:
        """The body is complete: end a refused exchange, else let the application run."""
        if self._refused is None:
            self._inner.finish()
        else:
            self._refused.stop()

    def on_connection_close(self) -> None:
        """Tell the application's delegate (it may hold a handler waiting for the body)."""
        if self._refused is not None:
            self._refused.cancel()
        self._inner.on_connection_close()

    def _refuse(self, *, before_body: bool) -> None:
        assert self._limit is not None
        message = limit_message(self._limit, self._declared, self._hint)
        body = json.dumps(
            {"error_code": RESOURCE_LIMIT_EXCEEDED, "message": message, "status": 413}
        ).encode()
        headers = httputil.HTTPHeaders(
            {
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                "Connection": "close",  # see the module's docstring
            }
        )
        context = getattr(self._connection, "context", None)
        access_log.warning(
            "413 %s (%s): body over the limit of %d bytes",
            self._request,
            getattr(context, "remote_ip", "?"),
            self._limit,
        )
        allow_draining(self._connection, self._declared)
        self._connection.write_headers(
            httputil.ResponseStartLine("", 413, "Payload Too Large"), headers, body
        )
        self._refused = DrainAfterAnswer(
            self._connection.finish,
            drain=0 if before_body and self._waits else self._drain,
            timeout=self._drain_timeout,
        )


class BodyLimitedApplication(web.Application):
    """A tornado application whose requests pass a :class:`BodyGate` first.

    Settings (besides tornado's):
        max_json_body: the limit in bytes of every body except those a route's handler
            streams (its ``streamed_methods``), e.g. ``4 * 1024**2``.
        refused_body_drain: :class:`BodyGate`'s ``drain`` (default :data:`DEFAULT_DRAIN`).
        refused_body_drain_timeout: its ``drain_timeout`` (:data:`DEFAULT_DRAIN_TIMEOUT`).
        body_limit_hint: what to do instead, appended to each 413's message.
    """

    def __init__(self, handlers: Iterable[Any] | None = None, **settings: Any):
        super().__init__(list(handlers or []), **settings)
        # the routes in tornado's order (the first match serves a request), with the methods
        # whose bodies each route's handler streams
        self._streaming = [
            (rule.matcher.regex, streamed_methods(rule.target))
            for rule in self.wildcard_router.rules
            if isinstance(rule.matcher, PathMatches)
        ]

    def json_body_limit(self) -> int:
        """The limit of bodies that are not streamed, in bytes."""
        return int(self.settings["max_json_body"])

    def body_limit(self, start_line: httputil.RequestStartLine) -> int | None:
        """The body limit of one request, or None when its handler streams the body."""
        path = start_line.path.partition("?")[0]
        for regex, streamed in self._streaming:
            if regex.match(path):
                return None if start_line.method in streamed else self.json_body_limit()
        return self.json_body_limit()

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """Each request's delegate, behind a :class:`BodyGate`."""
        return BodyGate(
            super().start_request(server_conn, request_conn),
            request_conn,
            limit_for=self.body_limit,
            drain=self.settings.get("refused_body_drain", DEFAULT_DRAIN),
            drain_timeout=self.settings.get("refused_body_drain_timeout", DEFAULT_DRAIN_TIMEOUT),
            hint=self.settings.get("body_limit_hint", ""),
        )


class BodyLimited(httputil.HTTPServerConnectionDelegate):
    """Puts a :class:`BodyGate` with one limit in front of an application's requests.

    For a service that streams no body: ``HTTPServer(BodyLimited(app, limit=64 * 1024))``.

    Args:
        app: the tornado application (or another connection delegate).
        limit: the largest request body in bytes.
        drain: :class:`BodyGate`'s ``drain``.
        drain_timeout: its ``drain_timeout``.
        hint: appended to each 413's message.
    """

    def __init__(
        self,
        app: httputil.HTTPServerConnectionDelegate,
        *,
        limit: int,
        drain: int = DEFAULT_DRAIN,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        hint: str = "",
    ):
        self.app = app
        self.limit = limit
        self.drain = drain
        self.drain_timeout = drain_timeout
        self.hint = hint

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """The application's delegate for the request, behind a :class:`BodyGate`."""
        return BodyGate(
            self.app.start_request(server_conn, request_conn),
            request_conn,
            limit_for=lambda _: self.limit,
            drain=self.drain,
            drain_timeout=self.drain_timeout,
            hint=self.hint,
        )

    def on_close(self, server_conn: object) -> None:
        """Pass the connection's end on to the application."""
        self.app.on_close(server_conn)
