"""The experiments app in-process with a Hub stand-in whose users and groups a test changes.

``conftest.service`` has fixed users; the tenant-boundary tests move users between groups
while they hold streams, and give some of them manager scopes, so they use this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from tornado.httpserver import HTTPServer

from hub_ext.experiments.app import make_app
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.live import LiveBus, LiveConfig
from hub_ext.experiments.store import SqlStore
from tests.hub import free_port


class MutableHubAuth:
    """``Authorization: token tok-<name>`` -> the user's model as ``users`` says now.

    Models carry ``groups`` and ``scopes`` as the Hub's ``/api/user`` does for a token with
    the user's own scopes (``hide_groups``: as for a token that may not read them).
    """

    access_scopes = None
    base_url = "/services/experiments/"  # the pages' XSRF cookie path
    hub_prefix = "/hub/"

    def __init__(self, users: dict[str, dict[str, Any]]):
        self.users = users

    def get_user(self, handler: Any) -> dict[str, Any] | None:
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token.startswith("tok-"):
            return None
        user = self.users.get(token.removeprefix("tok-"))
        if user is None:
            return None
        model = {
            "kind": "user",
            "name": token.removeprefix("tok-"),
            "admin": user.get("admin", False),
            "groups": sorted(user.get("groups", ())),
            "scopes": list(user.get("scopes", ())),
        }
        if user.get("hide_groups"):  # a token without read:users:groups: the service asks
            del model["groups"]
        return model

    def _persist_url_token_if_set(self, handler: Any) -> None:
        pass


@dataclass
class Service:
    """A running app: its URL, store, users table and live bus."""

    url: str
    store: SqlStore
    users: dict[str, dict[str, Any]]
    bus: LiveBus
    lookups: list[str] = field(default_factory=list)

    @property
    def api(self) -> str:
        """The native API's base URL."""
        return f"{self.url}/api/v1"

    def call(self, user: str, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call the native API as ``user``."""
        kwargs.setdefault("timeout", 30)
        headers = {"Authorization": f"token tok-{user}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.api}{path}", headers=headers, **kwargs)

    def mlflow(self, user: str, endpoint: str, body: dict | None = None, **kw) -> requests.Response:
        """Call the MLflow API as ``user`` (POST with a JSON body, or GET with ``params``)."""
        url = f"{self.url}/api/2.0/mlflow/{endpoint}"
        headers = {"Authorization": f"Bearer tok-{user}"}
        if body is None:
            return requests.get(url, headers=headers, timeout=30, **kw)
        return requests.post(url, json=body, headers=headers, timeout=30)

    def set_groups(self, user: str, *groups: str) -> None:
        """Move ``user`` to exactly ``groups`` (takes effect on their next request)."""
        self.users[user]["groups"] = set(groups)


@contextlib.contextmanager
def serve(
    tmp_path: Path, users: dict[str, dict[str, Any]], live: LiveConfig | None = None
) -> Iterator[Service]:
    """Run the app on a free 127.0.0.1 port in a thread until the block ends."""
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    bus = LiveBus(config=live)
    lookups: list[str] = []

    def group_lookup(name: str) -> list[str]:
        lookups.append(name)
        return sorted(users.get(name, {}).get("groups", ()))

    port = free_port()
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = make_app(
            store=store,
            prefix="/services/experiments/",
            hub_auth=MutableHubAuth(users),
            group_lookup=group_lookup,
            log=logging.getLogger("test-experiments"),
            blobs=BlobStore(tmp_path / "blobs", max_size=1024 * 1024),
            live=bus,
        )
        server = HTTPServer(app, max_body_size=2 * 1024 * 1024)
        server.listen(port, "127.0.0.1")
        state["loop"] = loop
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield Service(f"http://127.0.0.1:{port}/services/experiments", store, users, bus, lookups)
    finally:
        state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(10)
        store.close()
