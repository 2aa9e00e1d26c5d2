"""The experiments app in-process, with a stand-in for Hub authentication.

Only this tier replaces the Hub: tests/docker runs the same app behind a real Hub.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from tornado.httpserver import HTTPServer

from hub_ext.experiments.app import make_app
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.store import SqlStore
from tests.hub import free_port

USERS = {
    "tok-ann": {"name": "ann", "kind": "user", "admin": False, "groups": ["lqcd"]},
    "tok-bob": {"name": "bob", "kind": "user", "admin": False, "groups": ["nuclear"]},
    "tok-adm": {"name": "adm", "kind": "user", "admin": True, "groups": []},
}


class FakeHubAuth:
    """Maps ``Authorization: token X`` to a user model, like HubAuth.get_user."""

    access_scopes = None

    def get_user(self, handler):
        header = handler.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        return USERS.get(token)

    def _persist_url_token_if_set(self, handler):
        pass


@pytest.fixture
def service(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    port = free_port()
    ready = threading.Event()
    state = {}

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = make_app(
            store=store,
            prefix="/services/experiments/",
            hub_auth=FakeHubAuth(),
            group_lookup=lambda name: [],
            log=logging.getLogger("test-experiments"),
            blobs=BlobStore(tmp_path / "blobs", max_size=1024 * 1024),
        )
        server = HTTPServer(app, max_body_size=2 * 1024 * 1024)
        server.listen(port, "127.0.0.1")
        state["loop"], state["server"] = loop, server
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{port}/services/experiments", store
    state["loop"].call_soon_threadsafe(state["loop"].stop)
    thread.join(10)
    store.close()
