"""The quotas app in-process: access rules, JSON API, pages and the form, with fake sources."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from hub_ext.common.hub_client import HubSource
from hub_ext.quotas.app import make_app
from latticehub.policy import parse_policy
from tests.quotas.fakes import PREFIX, FakeEngine, FakeHub, TokenHubAuth, container, server

ACCESS = "access:services!service=quotas"
MODELS = {
    "boss": {"name": "boss", "admin": True, "scopes": [ACCESS, "groups", "admin:groups"]},
    "ann": {"name": "ann", "scopes": [ACCESS, "groups!group=lqcd", "read:groups!group=lqcd"]},
    "ben": {"name": "ben", "scopes": [ACCESS, "self"]},  # may reach the service, manages none
    "cat": {"name": "cat", "scopes": ["self", "groups!group=lqcd"]},  # no access scope
}
POLICY = parse_policy(
    {
        "group_limits": {
            "lqcd": {"max_servers": 3, "mem_limit": "4G", "images": ["img:1", "img:2"]},
            "nuclear": {"max_servers": 1},
        },
        "hub_id": "h1",
    }
)


@pytest_asyncio.fixture(loop_scope="function")
async def service():
    hub = FakeHub(
        {
            "lqcd": {"users": ["ann", "ben"], "properties": {"owner": "ann"}},
            "nuclear": {"users": ["dan"], "properties": {}},
        },
        [
            {"name": "ben", "groups": ["lqcd"], "servers": {"": server()}},
            {"name": "dan", "groups": ["nuclear"], "servers": {"": server("spawn")}},
        ],
        {"nuclear": 0},
    )
    engine = FakeEngine([container("lqcd", "ben"), container("<b>x</b>", "ghost")])
    app = make_app(
        policy=POLICY,
        hub=HubSource("http://hub/hub/api", "t", fetch=hub.fetch),
        engine=engine,
        hub_auth=TokenHubAuth(MODELS),
        prefix=PREFIX,
        log=logging.getLogger("test-quotas"),
    )
    sock, port = bind_unused_port()
    server_ = HTTPServer(app)
    server_.add_sockets([sock])

    async def call(method, path, user=None, body=None, form=None):
        headers = {"Authorization": f"token {user}"} if user else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
        elif form is not None:
            data = urlencode(form, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = HTTPRequest(
            f"http://127.0.0.1:{port}{PREFIX}{path}",
            method=method,
            headers=headers,
            body=data,
            follow_redirects=False,
            allow_nonstandard_methods=True,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        text = (response.body or b"").decode()
        is_json = response.headers.get("Content-Type", "").startswith("application/json")
        return response.code, (json.loads(text) if is_json else text), response

    call.hub, call.engine = hub, engine
    yield call
    server_.stop()


async def test_admin_sees_every_group_with_usage(service):
    status, body, _ = await service("GET", "api/groups", "boss")
    assert status == 200
    names = [g["name"] for g in body["items"]]
    assert names == ["lqcd", "nuclear", "<b>x</b>"]
    lqcd, nuclear = body["items"][:2]
    assert (lqcd["usage"]["used"], lqcd["usage"]["limit"], lqcd["usage"]["containers"]) == (1, 3, 1)
    assert (nuclear["usage"]["pending"], nuclear["usage"]["used"]) == (1, 1)
    assert body["_pagination"]["total"] == 3 and "servers" not in lqcd


async def test_manager_sees_only_their_group(service):
    status, body, _ = await service("GET", "api/groups", "ann")
    assert status == 200 and [g["name"] for g in body["items"]] == ["lqcd"]
    status, body, _ = await service("GET", "api/groups/lqcd", "ann")
    assert status == 200 and [s["user"] for s in body["servers"]] == ["ben"]
    status, body, _ = await service("GET", "api/nodes", "ann")
    assert body["items"][0]["groups"] == {"lqcd": 1}  # the orphan's group is not shown
    assert body["items"][0]["reserved"]["servers"] == 2


@pytest.mark.parametrize(
    ("method", "path", "user", "status", "words"),
    [
        ("GET", "api/groups", None, 401, ["Authentication required"]),
        ("GET", "api/groups", "ben", 403, ["ben manages no group", "groups!group=<name>"]),
        ("GET", "api/groups", "cat", 403, ["cat may not use the quotas service"]),
        ("GET", "api/groups/nuclear", "ann", 403, ["not a manager of group 'nuclear'"]),
        ("GET", "api/groups/secret", "ann", 403, ["not a manager"]),  # existence not disclosed
        ("GET", "api/groups/secret", "boss", 404, ["no share"]),
        ("PATCH", "api/groups/nuclear/limits", "ann", 403, ["not a manager"]),
        ("PATCH", "api/groups/lqcd/limits", "ben", 403, ["manages no group"]),
        ("GET", "api/nodes", "ben", 403, ["manages no group"]),
        ("GET", "", "ben", 403, ["manages no group"]),
        ("GET", "groups/nuclear", "ann", 403, ["not a manager"]),
    ],
)
async def test_access_refusals(service, method, path, user, status, words):
    body = {"max_servers": 1} if method == "PATCH" else None
    code, answer, _ = await service(method, path, user, body=body)
    assert code == status, answer
    text = answer["message"] if isinstance(answer, dict) else answer
    for word in words:
        assert word in text, text


async def test_lowering_through_the_api(service):
    status, body, _ = await service(
        "PATCH", "api/groups/lqcd/limits", "ann", body={"max_servers": 1, "mem_limit": "2G"}
    )
    assert status == 200, body
    assert body["effective"]["max_servers"] == 1 and body["usage"]["limit"] == 1
    assert body["lowered"] == {"max_servers": 1, "mem_limit": "2G"}
    # other property keys are kept
    assert service.hub.groups["lqcd"]["properties"]["owner"] == "ann"
    status, body, _ = await service("GET", "api/groups/lqcd/limits", "ann")
    assert body["ceiling"]["max_servers"] == 3 and body["effective"]["mem_limit"] == 2 * 1024**3
    # null restores the ceiling
    status, body, _ = await service(
        "PATCH", "api/groups/lqcd/limits", "ann", body={"max_servers": None}
    )
    assert body["effective"]["max_servers"] == 3 and body["lowered"] == {"mem_limit": "2G"}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"max_servers": 4}, 400, ["max_servers=4", "ceiling of 3"]),
        ({"images": ["img:3"]}, 400, ["img:3", "[img:1, img:2]"]),
        ({"home": "/x"}, 400, ["admin-only"]),
        ("not an object", 400, ["JSON object"]),
    ],
)
async def test_lowering_refusals(service, body, status, words):
    code, answer, _ = await service("PATCH", "api/groups/lqcd/limits", "ann", body=body)
    assert code == status
    for word in words:
        assert word in answer["message"]
    assert "latticehub" not in service.hub.groups["lqcd"]["properties"]


async def test_malformed_json_is_a_400(service):
    code, answer, _ = await service("PATCH", "api/groups/lqcd/limits", "ann", body=None)
    assert code == 400


async def test_write_refused_by_the_hub_names_the_missing_scope(service):
    service.hub.writable = {"nuclear"}
    code, answer, _ = await service(
        "PATCH", "api/groups/lqcd/limits", "boss", body={"max_servers": 1}
    )
    assert code == 502 and "groups!group=lqcd" in answer["message"]


async def test_engine_down_is_a_503(service):
    service.engine.fail = True
    code, answer, _ = await service("GET", "api/groups", "boss")
    assert code == 503 and "engine down" not in answer["message"]
    assert "could not list containers" in answer["message"]


async def test_overview_page_escapes_and_links(service):
    code, html, response = await service("GET", "", "boss")
    assert code == 200
    assert 'data-group="lqcd"' in html and "/services/quotas/groups/lqcd" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "/services/quotas/groups/%3Cb%3Ex%3C/b%3E" in html
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    code, html, _ = await service("GET", "", "ann")
    assert 'data-group="lqcd"' in html and 'data-group="nuclear"' not in html


async def test_group_page_with_servers_and_form(service):
    code, html, _ = await service("GET", "groups/lqcd", "ann")
    assert code == 200
    assert 'data-user="ben"' in html and 'id="lower-form"' in html
    assert 'name="max_servers"' in html and 'value="img:2"' in html
    code, html, _ = await service("GET", "groups/nuclear", "boss")
    assert 'data-user="dan"' in html  # a pending spawn
    assert 'name="images"' not in html  # no image ceiling: nothing to tick


async def test_form_post_lowers_and_redirects(service):
    form = {"max_servers": "2", "mem_limit": "", "cpu_limit": "", "images": ["img:1"]}
    code, _, response = await service("POST", "groups/lqcd", "ann", form=form)
    assert code == 303 and response.headers["Location"].endswith("/groups/lqcd?saved=1")
    properties = service.hub.groups["lqcd"]["properties"]
    assert properties == {"owner": "ann", "latticehub": {"max_servers": 2, "images": ["img:1"]}}
    code, html, _ = await service("GET", "groups/lqcd?saved=1", "ann")
    assert 'id="saved"' in html
    assert '<tr data-key="max_servers">' in html


async def test_form_post_above_the_ceiling_shows_the_message(service):
    code, html, _ = await service("POST", "groups/lqcd", "ann", form={"max_servers": "7"})
    assert code == 400
    assert 'id="form-error"' in html and "ceiling of 3" in html
    assert 'value="7"' in html  # the form keeps what was typed
