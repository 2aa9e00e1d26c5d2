"""The experiments app in-process with stand-ins for the Hub: the one harness of this tier.

:class:`FakeHubAuth` maps tokens to models (fixed users); :class:`MutableHubAuth` follows a
users table that a test changes (the tenant-boundary tests move users between groups while
they hold streams). :func:`experiments` serves the app in a thread; :func:`serve` adds the
mutable users and the live bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
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

#: The users of most service tests: ``Authorization: token tok-<name>``.
USERS = {
    "tok-ann": {"name": "ann", "kind": "user", "admin": False, "groups": ["lqcd"]},
    "tok-bob": {"name": "bob", "kind": "user", "admin": False, "groups": ["nuclear"]},
    "tok-adm": {"name": "adm", "kind": "user", "admin": True, "groups": []},
}
PREFIX = "/services/experiments/"


class FakeHubAuth:
    """The one stand-in for ``HubAuth``: ``Authorization: token X`` -> the model of ``X``.

    ``models`` maps tokens to user (or service) models (default :data:`USERS`).
    """

    access_scopes = None
    base_url = PREFIX  # the pages' XSRF cookie path
    hub_prefix = "/hub/"

    def __init__(self, models: Mapping[str, dict[str, Any]] | None = None):
        self.models = USERS if models is None else models

    def model_for(self, token: str) -> dict[str, Any] | None:
        """The caller that ``token`` stands for, or None."""
        return self.models.get(token)

    def get_user(self, handler: Any) -> dict[str, Any] | None:
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        return self.model_for(token)

    def _persist_url_token_if_set(self, handler: Any) -> None:
        pass


class MutableHubAuth(FakeHubAuth):
    """``Authorization: token tok-<name>`` -> the user's model as ``users`` says now.

    Models carry ``groups`` and ``scopes`` as the Hub's ``/api/user`` does for a token with
    the user's own scopes (``hide_groups``: as for a token that may not read them).
    """

    def __init__(self, users: dict[str, dict[str, Any]]):
        super().__init__({})
        self.users = users

    def model_for(self, token: str) -> dict[str, Any] | None:
        user = self.users.get(token.removeprefix("tok-")) if token.startswith("tok-") else None
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


@contextlib.contextmanager
def serving(
    make: Callable[[], HTTPServer], background: Sequence[Callable[[], Awaitable[Any]]] = ()
) -> Iterator[asyncio.AbstractEventLoop]:
    """Run ``make()`` (it returns a listening server) on its own event loop in a thread.

    Yields the loop; ``background`` coroutines run on it meanwhile. The tasks are cancelled
    and the server and the loop stop when the block ends.
    """
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        state["loop"], state["server"] = loop, make()
        state["tasks"] = [loop.create_task(start()) for start in background]
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield state["loop"]
    finally:
        for task in state["tasks"]:
            state["loop"].call_soon_threadsafe(task.cancel)
        state["loop"].call_soon_threadsafe(state["server"].stop)
        state["loop"].call_soon_threadsafe(state["loop"].stop)
        thread.join(10)


@contextlib.contextmanager
def experiments(
    store: Any,
    blob_dir: Path,
    *,
    port: int | None = None,
    hub_auth: Any = None,
    group_lookup: Any = None,
    max_body_size: int = 2 * 1024 * 1024,
    max_artifact_size: int = 1024 * 1024,
    background: Sequence[Callable[[], Awaitable[Any]]] = (),
    **options: Any,
) -> Iterator[str]:
    """The experiments app on 127.0.0.1 in a thread; yields its URL (no trailing slash).

    Args:
        store: the tracking store (the caller closes it).
        blob_dir: the artifact directory.
        port: the port (default: a free one).
        hub_auth: the Hub stand-in (default :class:`FakeHubAuth` with :data:`USERS`).
        group_lookup: ``name -> groups`` for models without groups (default: none).
        max_body_size: the server-wide body limit, as ``ExperimentsApp.start`` sets it.
        max_artifact_size: the blob store's limit of one artifact.
        background: coroutine functions run on the app's loop meanwhile (job pollers).
        options: more ``make_app`` arguments (``jobs``, ``max_json_body``, ...).
    """
    port = port or free_port()

    def make() -> HTTPServer:
        app = make_app(
            store=store,
            prefix=PREFIX,
            hub_auth=hub_auth or FakeHubAuth(),
            group_lookup=group_lookup or (lambda name: []),
            log=logging.getLogger("test-experiments"),
            blobs=BlobStore(blob_dir, max_size=max_artifact_size),
            **options,
        )
        server = HTTPServer(app, max_body_size=max_body_size)
        server.listen(port, "127.0.0.1")
        return server

    with serving(make, background):
        yield f"http://127.0.0.1:{port}{PREFIX.rstrip('/')}"


def declared_only(
    port: int, method: str, path: str, size: int, headers: dict[str, str], timeout: float = 10
) -> tuple[int, dict[str, str], Any]:
    """Send only the headers of a request that declares ``size`` body bytes; read the answer.

    Returns:
        ``(status, headers, parsed JSON body)``; a server that waited for the body would time
        out here instead.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path)
        for name, value in {**headers, "Content-Length": str(size)}.items():
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read())
    finally:
        conn.close()


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
    """Run the app on a free 127.0.0.1 port in a thread until the block ends.

    Groups a model does not show are asked of a coroutine, as of the Hub.
    """
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    bus = LiveBus(config=live)
    lookups: list[str] = []

    async def group_lookup(name: str) -> list[str]:
        lookups.append(name)
        return sorted(users.get(name, {}).get("groups", ()))

    try:
        with experiments(
            store, tmp_path / "blobs", hub_auth=MutableHubAuth(users), group_lookup=group_lookup,
            live=bus,
        ) as url:  # fmt: skip
            yield Service(url, store, users, bus, lookups)
    finally:
        store.close()
