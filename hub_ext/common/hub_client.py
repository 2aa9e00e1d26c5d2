"""Hub REST API calls with the service's own token (the seam: an injectable ``fetch``).

The one Hub client of the three services: every call is a coroutine on tornado's
``AsyncHTTPClient``, so that no service blocks its event loop on the Hub.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

#: ``fetch(method, url, headers, body) -> (status, body bytes)``; raises ``OSError`` when
#: the Hub cannot be reached.
Fetch = Callable[[str, str, dict[str, str], bytes | None], Awaitable[tuple[int, bytes]]]

PAGINATION = "application/jupyterhub-pagination+json"
#: Hub API pages fetched at most per listing (x ``PAGE_SIZE`` items).
MAX_PAGES = 100
PAGE_SIZE = 200
QUEUE_GAUGE = "latticehub_group_spawns_queued"
_GAUGE_RE = re.compile(
    r"^" + QUEUE_GAUGE + r'\{(?:[^}]*,)?group="((?:[^"\\]|\\.)*)"[^}]*\}\s+([0-9.eE+-]+|NaN)\s*$'
)


class HubError(Exception):
    """The Hub answered with an error (``status_code``) or could not be reached (502)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class HubUnreachable(HubError):
    """The Hub could not be reached at all (status 502): no answer to read."""


async def tornado_fetch(
    method: str, url: str, headers: dict[str, str], body: bytes | None, *, timeout: float = 10
) -> tuple[int, bytes]:
    """The default ``fetch``: tornado's async HTTP client, errors returned as statuses."""
    request = HTTPRequest(
        url,
        method=method,
        headers=headers,
        body=body,
        request_timeout=timeout,
        connect_timeout=timeout,
        allow_nonstandard_methods=True,
    )
    try:
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
    except HTTPClientError as e:  # timeouts arrive as code 599
        raise OSError(f"{method} {url}: {e}") from None
    if response.code == 599:
        raise OSError(f"{method} {url}: {response.error}")
    return response.code, response.body or b""


def parse_queue_gauge(text: str) -> dict[str, int]:
    """Spawns waiting per group from the Hub's Prometheus text (``/hub/metrics``).

    >>> parse_queue_gauge('latticehub_group_spawns_queued{group="lqcd"} 2.0')
    {'lqcd': 2}
    """
    queued: dict[str, int] = {}
    for line in text.splitlines():
        match = _GAUGE_RE.match(line.strip())
        if match and match.group(2) != "NaN":
            group = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), match[1])
            queued[group] = int(float(match.group(2)))
    return queued


class HubSource:
    """What the service reads from and writes to the Hub.

    Args:
        api_url: the Hub API, e.g. ``http://127.0.0.1:8081/hub/api``.
        token: the service's API token (its role's scopes, docs/quotas.md).
        fetch: the HTTP seam (default :func:`tornado_fetch`).
    """

    def __init__(self, api_url: str, token: str, *, fetch: Fetch | None = None):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.fetch = fetch or tornado_fetch

    async def _call(
        self, method: str, path: str, *, body: Any = None, accept: str = "application/json"
    ) -> tuple[int, Any]:
        url = path if path.startswith("http") else f"{self.api_url}{path}"
        headers = {"Authorization": f"token {self.token}", "Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            status, raw = await self.fetch(method, url, headers, data)
        except OSError as e:
            raise HubUnreachable(502, f"the Hub API is not reachable ({e})") from None
        if status >= 400:
            try:
                message = json.loads(raw).get("message") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:300]
            raise HubError(status, f"{method} {path}: {status} {message}")
        if not raw:
            return status, None
        if accept == "text/plain":
            return status, raw.decode(errors="replace")
        try:
            return status, json.loads(raw)
        except ValueError:
            raise HubError(502, f"{method} {path}: the Hub answered with no JSON") from None

    async def _list(self, path: str, params: dict[str, str] | None = None) -> list[dict]:
        items: list[dict] = []
        offset = 0
        for _ in range(MAX_PAGES):
            query = urlencode({**(params or {}), "offset": offset, "limit": PAGE_SIZE})
            _, page = await self._call("GET", f"{path}?{query}", accept=PAGINATION)
            if isinstance(page, list):  # a Hub that ignores the pagination header
                return page
            items += page.get("items") or []
            following = (page.get("_pagination") or {}).get("next")
            if not following:
                return items
            offset = int(following.get("offset", offset + PAGE_SIZE))
        return items

    async def active_users(self) -> list[dict]:
        """Users with an active (ready or pending) server, with their server models."""
        return await self._list("/users", {"state": "active"})

    async def groups(self, names: Iterable[str] | None = None) -> list[dict]:
        """Group models (with ``properties``): the named ones, or every group when ``None``.

        Named groups that do not exist are left out.
        """
        if names is None:
            return await self._list("/groups")
        found = []
        for name in names:
            model = await self.group(name)
            if model is not None:
                found.append(model)
        return found

    async def _model(self, path: str) -> dict | None:
        """The model at ``path``, ``None`` when the Hub has none (404)."""
        try:
            _, model = await self._call("GET", path)
        except HubError as e:
            if e.status_code == 404:
                return None
            raise
        return model

    async def group(self, name: str) -> dict | None:
        """One group's model, ``None`` if it does not exist."""
        return await self._model(f"/groups/{quote(name, safe='')}")

    async def set_properties(self, name: str, properties: dict[str, Any]) -> dict:
        """Replace a group's properties (``PUT /groups/{name}/properties``); the new model."""
        _, model = await self._call(
            "PUT", f"/groups/{quote(name, safe='')}/properties", body=properties
        )
        return model

    async def queued(self) -> dict[str, int] | None:
        """Spawns waiting per group, from the spawner's gauge on ``/hub/metrics``.

        ``None`` when the metrics cannot be read (the pages then show no queue figure).
        """
        metrics_url = self.api_url.removesuffix("/api") + "/metrics"
        try:
            _, text = await self._call("GET", metrics_url, accept="text/plain")
        except HubError:
            return None
        return parse_queue_gauge(text or "")

    async def whoami(self) -> dict:
        """The service's own model, with its token's ``scopes``."""
        _, model = await self._call("GET", "/user")
        return model

    async def user(self, name: str) -> dict | None:
        """One user's model (with ``groups``), ``None`` if the Hub has no such user."""
        return await self._model(f"/users/{quote(name, safe='')}")

    async def groups_of(self, name: str) -> list[str]:
        """The groups of user ``name`` as the Hub tells now; ``[]`` for any refusal.

        A user the Hub does not know, or does not let this service read, is in no group
        (what a member may do is then refused, never allowed by mistake).

        Raises:
            HubUnreachable: when the Hub cannot be reached (the caller's rights are unknown).
        """
        try:
            model = await self.user(name)
        except HubUnreachable:
            raise
        except HubError:
            return []
        return list((model or {}).get("groups") or [])


#: ``name -> groups``: synchronous (a table, a stand-in) or a coroutine function (the Hub).
GroupLookup = Callable[[str], "list[str] | Awaitable[list[str]]"]


class GroupCache:
    """Users' groups as ``lookup`` tells, each answer kept at most ``max_age`` seconds.

    The bound keeps a removal from a group effective within ``max_age`` on every request.
    A coroutine ``lookup`` (the Hub) is only awaited; a synchronous one (a table) may also
    answer :meth:`known` at once.

    Args:
        lookup: ``name -> groups`` (:data:`GroupLookup`).
        max_age: seconds an answer is kept, or a function that says it (read at each use).
        clock: the monotonic clock (a seam for tests).
        max_entries: past this many entries, expired ones are dropped.
    """

    def __init__(
        self,
        lookup: GroupLookup,
        max_age: float | Callable[[], float],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ):
        self.lookup = lookup
        self._max_age = max_age
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, list[str]]] = {}
        call = getattr(lookup, "__call__", None)  # noqa: B004 - a callable object's method
        self.asynchronous = inspect.iscoroutinefunction(lookup) or inspect.iscoroutinefunction(call)

    @property
    def max_age(self) -> float:
        """Seconds an answer is kept now."""
        return self._max_age() if callable(self._max_age) else self._max_age

    def fresh(self, name: str) -> list[str] | None:
        """The kept answer for ``name`` while it is younger than ``max_age``; else None."""
        entry = self._entries.get(name)
        if entry is not None and self.clock() - entry[0] < self.max_age:
            return entry[1]
        return None

    def known(self, name: str) -> list[str] | None:
        """Groups of ``name`` without waiting: kept, or from a synchronous ``lookup``.

        ``None`` when only awaiting :meth:`groups` can tell.
        """
        found = self.fresh(name)
        if found is None and not self.asynchronous:
            found = self._keep(name, self.lookup(name))  # type: ignore[arg-type]
        return found

    async def groups(self, name: str) -> list[str]:
        """Groups of ``name``: kept while fresh, else asked (and kept)."""
        found = self.fresh(name)
        if found is not None:
            return found
        answer = self.lookup(name)
        if inspect.isawaitable(answer):
            answer = await answer
        return self._keep(name, answer)

    def _keep(self, name: str, groups: Iterable[str]) -> list[str]:
        now = self.clock()
        if len(self._entries) > self.max_entries:  # one entry per caller: drop the expired
            age = self.max_age
            for key in [k for k, (at, _) in self._entries.items() if now - at >= age]:
                del self._entries[key]
        kept = list(groups)
        self._entries[name] = (now, kept)
        return kept
