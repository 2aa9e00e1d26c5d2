"""Each group's artifact storage on the quotas API and pages, read over HTTP from a real
experiments app (in-process; its Hub authentication is a stand-in here, the real Hub's
custom scope is exercised in tests/security/test_storage_caps.py)."""

from __future__ import annotations

import json
import logging

import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from hub_ext.common.hub_client import HubSource
from hub_ext.experiments.app import make_app as make_experiments_app
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.storage import parse_storage_caps
from hub_ext.experiments.store import RunStatus, SqlStore
from hub_ext.quotas.app import make_app
from hub_ext.quotas.storage_source import ExperimentsStorageSource
from tests.quotas.fakes import PREFIX, FakeEngine, FakeHub, TokenHubAuth, container, server
from tests.quotas.test_app import MODELS, POLICY

SERVICE_MODELS = {
    "svc-ok": {"name": "quotas", "kind": "service", "scopes": ["custom:latticehub-usage:read"]},
    "svc-bare": {"name": "quotas", "kind": "service", "scopes": []},
}


class ServiceTokenAuth:
    """The experiments side's stand-in for HubAuth: the quotas service's tokens."""

    access_scopes = None

    def get_user(self, handler):
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        return SERVICE_MODELS.get(token) if scheme.lower() == "token" else None

    def _persist_url_token_if_set(self, handler):
        pass


def _listen(app) -> tuple[HTTPServer, int]:
    sock, port = bind_unused_port()
    http = HTTPServer(app)
    http.add_sockets([sock])
    return http, port


@pytest_asyncio.fixture(loop_scope="function")
async def stack(tmp_path):
    """An experiments app with 3 KiB of lqcd artifacts (one blob twice) and a quotas app."""
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    project = store.create_project("phi4", owner="ann", group="lqcd")
    for sha, size in (("a" * 64, 1024), ("b" * 64, 2048), ("a" * 64, 1024)):
        run = store.create_run(project.id, user="ann", status=RunStatus.RUNNING)
        store.add_artifact(run.id, "model.pt", sha, size)
    experiments = make_experiments_app(
        store=store,
        prefix="/services/experiments/",
        hub_auth=ServiceTokenAuth(),
        group_lookup=lambda name: [],
        log=logging.getLogger("test-storage"),
        blobs=BlobStore(tmp_path / "blobs"),
        storage_caps=parse_storage_caps({"lqcd": "4K"}),
    )
    exp_http, exp_port = _listen(experiments)
    api = f"http://127.0.0.1:{exp_port}/services/experiments"
    hub = FakeHub(
        {"lqcd": {"users": ["ann", "ben"], "properties": {}}, "nuclear": {"users": ["dan"]}},
        [{"name": "ben", "groups": ["lqcd"], "servers": {"": server()}}],
    )
    servers = []

    def quotas(token: str) -> int:
        app = make_app(
            policy=POLICY,
            hub=HubSource("http://hub/hub/api", "t", fetch=hub.fetch),
            engine=FakeEngine([container("lqcd", "ben")]),
            hub_auth=TokenHubAuth(MODELS),
            prefix=PREFIX,
            log=logging.getLogger("test-storage"),
            storage_source=ExperimentsStorageSource(api, token),
        )
        http, port = _listen(app)
        servers.append(http)
        return port

    async def get(port: int, path: str, user: str) -> tuple[int, str]:
        request = HTTPRequest(
            f"http://127.0.0.1:{port}{PREFIX}{path}", headers={"Authorization": f"token {user}"}
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        return response.code, response.body.decode()

    yield quotas, get
    for http in [*servers, exp_http]:
        http.stop()
    store.close()


async def test_api_and_pages_show_use_against_the_cap(stack):
    quotas, get = stack
    port = quotas("svc-ok")
    code, body = await get(port, "api/groups/lqcd", "ann")
    assert code == 200, body
    # the blob stored by two runs counts once: 1 KiB + 2 KiB of a 4 KiB cap
    assert json.loads(body)["artifact_storage"] == {"used_bytes": 3072, "cap_bytes": 4096}
    code, body = await get(port, "api/groups", "boss")
    storage = {g["name"]: g["artifact_storage"] for g in json.loads(body)["items"]}
    assert storage["nuclear"] == {"used_bytes": 0, "cap_bytes": None}
    code, body = await get(port, "groups/lqcd", "ann")
    assert code == 200
    assert 'id="artifact-storage"' in body and "(75 %)" in body
    assert '<span class="storage-used">3K</span>' in body
    assert '<span class="storage-cap">4K</span>' in body
    code, body = await get(port, "", "boss")
    assert 'class="num artifact-storage"' in body


async def test_a_token_without_the_scope_shows_a_warning_not_numbers(stack):
    quotas, get = stack
    port = quotas("svc-bare")
    code, body = await get(port, "api/groups/lqcd", "ann")
    assert code == 200
    answer = json.loads(body)
    assert answer["artifact_storage"] is None
    assert "answered 403" in answer["storage_warning"]
    assert "custom:latticehub-usage:read" in answer["storage_warning"]
    code, body = await get(port, "groups/lqcd", "ann")
    assert code == 200 and 'id="storage-warning"' in body and 'id="artifact-storage"' not in body
