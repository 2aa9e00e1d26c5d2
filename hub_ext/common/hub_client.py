"""Hub REST API calls with the service's own token (the seam: an injectable ``fetch``)."""

from __future__ import annotations

import json
import re
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
            raise HubError(502, f"the Hub API is not reachable ({e})") from None
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

    async def group(self, name: str) -> dict | None:
        """One group's model, ``None`` if it does not exist."""
        try:
            _, model = await self._call("GET", f"/groups/{quote(name, safe='')}")
        except HubError as e:
            if e.status_code == 404:
                return None
            raise
        return model

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
