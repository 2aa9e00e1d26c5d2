"""What the services' handlers share: JSON errors, the async identity, the group cache, pages."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import pytest
from tornado import web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from hub_ext.common.handlers import ServiceError, ServiceHandler, code_for_status
from hub_ext.common.hub_client import GroupCache, HubSource, HubUnreachable
from hub_ext.common.pages import TEMPLATE_DIR, PageMixin, SearchPathLoader
from hub_ext.experiments.store.errors import TrackingError


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "BAD_REQUEST"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "RESOURCE_DOES_NOT_EXIST"),
        (405, "BAD_REQUEST"),
        (409, "CONFLICT"),
        (413, "RESOURCE_LIMIT_EXCEEDED"),
        (500, "INTERNAL_ERROR"),
        (502, "INTERNAL_ERROR"),
    ],
)
def test_an_error_without_a_code_is_named_by_its_status(status, code):
    assert code_for_status(status) == code
    assert ServiceError(status, "m").code == code


class Auth:
    """``Authorization: token <name>``: the user ``name``; ``refused`` is not admitted."""

    access_scopes = None
    hub_prefix = "/hub/"

    def get_user(self, handler):
        token = handler.request.headers.get("Authorization", "").removeprefix("token ")
        return {"name": token, "kind": "user"} if token else None


class Refusing(ServiceHandler):
    def check_hub_user(self, model):
        from jupyterhub.services.auth import UserNotAllowed

        if model["name"] == "refused":
            raise UserNotAllowed(model)
        return model


class Raises(Refusing):
    domain_errors = (ServiceError, TrackingError)

    def get(self, kind: str) -> None:
        if kind == "service":
            raise ServiceError(409, "taken: pick another name")
        if kind == "tracking":
            raise TrackingError("no such run", "RESOURCE_DOES_NOT_EXIST")
        if kind == "http":
            raise web.HTTPError(413, "over %d bytes", 10)
        if kind == "percent":
            raise web.HTTPError(400, "100% sure")
        if kind == "bug":
            raise ValueError("a bug")
        self.write_json({"user": (self.current_user or {}).get("name")})


class Page(PageMixin, Refusing):
    service_title = "Tests"

    def wants_login(self) -> bool:
        return True

    def get_login_url(self) -> str:
        return "/hub/login"

    def get(self) -> None:
        raise ServiceError(404, "no <such> page")


@contextlib.asynccontextmanager
async def serving(tmp_path: Path):
    """The handlers on the test's own loop; yields the base URL."""
    (tmp_path / "base.html").write_text(
        '{% extends "layout.html" %}{% block service_nav %}<a id="own">own</a>{% end %}'
    )
    app = web.Application(
        [("/api/([a-z]+)", Raises), ("/page", Page)],
        hub_auth=Auth(),
        log=logging.getLogger("test"),
        service_prefix="/services/t/",
        template_path=str(tmp_path),
    )
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


async def fetch(url: str, token: str | None = None):
    headers = {"Authorization": f"token {token}"} if token else {}
    return await AsyncHTTPClient().fetch(
        url, headers=headers, raise_error=False, follow_redirects=False
    )


@pytest.mark.parametrize(
    ("kind", "status", "code", "message"),
    [
        ("service", 409, "CONFLICT", "taken: pick another name"),
        ("tracking", 404, "RESOURCE_DOES_NOT_EXIST", "no such run"),
        ("http", 413, "RESOURCE_LIMIT_EXCEEDED", "over 10 bytes"),
        ("percent", 400, "BAD_REQUEST", "100% sure"),
        ("bug", 500, "INTERNAL_ERROR", "Internal error: the service's log has the details."),
    ],
)
async def test_errors_are_json_with_status_code_and_message(tmp_path, kind, status, code, message):
    async with serving(tmp_path) as base:
        r = await fetch(f"{base}/api/{kind}", "ann")
    assert r.code == status
    assert r.headers["Content-Type"] == "application/json"
    assert json.loads(r.body) == {"status": status, "error_code": code, "message": message}


@pytest.mark.parametrize(("token", "user"), [("ann", "ann"), (None, None), ("refused", None)])
async def test_the_caller_is_found_in_prepare(tmp_path, token, user):
    async with serving(tmp_path) as base:
        r = await fetch(f"{base}/api/ok", token)
    assert json.loads(r.body) == {"user": user}


async def test_a_page_sends_a_browser_to_log_in_and_refuses_who_is_not_admitted(tmp_path):
    async with serving(tmp_path) as base:
        r = await fetch(f"{base}/page")
        refused = await fetch(f"{base}/page", "refused")
    assert (r.code, r.headers["Location"]) == (302, "/hub/login")
    r = refused
    assert r.code == 403 and b"user refused is not allowed." in r.body


async def test_a_page_error_is_the_shared_page_in_the_services_layout(tmp_path):
    async with serving(tmp_path) as base:
        r = await fetch(f"{base}/page", "ann")
    page = r.body.decode()
    assert r.code == 404 and r.headers["Content-Type"].startswith("text/html")
    assert "no &lt;such&gt; page" in page  # escaped
    assert '<a id="own">own</a>' in page  # the service's base.html, from its own directory
    assert "latticehub <span>Tests</span>" in page and 'href="/hub/home">Hub home' in page
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert r.headers["Cache-Control"] == "no-store"


def test_the_loader_prefers_the_services_own_templates(tmp_path):
    (tmp_path / "error.html").write_text("own {{ 1 + 1 }}")
    loader = SearchPathLoader([str(tmp_path), TEMPLATE_DIR])
    assert loader.load("error.html").generate() == b"own 2"
    assert b"<!DOCTYPE html>" in loader.load("layout.html").generate(
        base="/", hub_home="/hub/home", service_title="T", user_name=None
    )
    with pytest.raises(FileNotFoundError, match="nope.html"):
        loader.load("nope.html")
    assert Path(TEMPLATE_DIR, "error.html").is_file()


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_the_group_cache_keeps_answers_for_max_age(asynchronous):
    asked, clock, groups = [], Clock(), {"ann": ["lqcd"]}

    def table(name):
        asked.append(name)
        return list(groups.get(name, []))

    async def hub(name):
        return table(name)

    cache = GroupCache(hub if asynchronous else table, max_age=4, clock=clock)
    assert cache.asynchronous is asynchronous
    assert cache.known("ann") == (None if asynchronous else ["lqcd"])
    assert await cache.groups("ann") == ["lqcd"]
    groups["ann"] = []  # removed from the group
    clock.now += 3.9
    assert (await cache.groups("ann"), cache.known("ann")) == (["lqcd"], ["lqcd"])
    clock.now += 0.1  # 4 s: asked again
    assert await cache.groups("ann") == []
    assert asked == ["ann", "ann"]


async def test_a_group_cache_of_age_zero_always_asks():
    asked = []
    cache = GroupCache(lambda name: asked.append(name) or ["g"], max_age=lambda: 0.0)
    for _ in range(3):
        assert await cache.groups("ann") == ["g"]
    assert len(asked) == 3


async def test_the_group_cache_forgets_expired_answers_past_its_size():
    clock = Clock()
    cache = GroupCache(lambda name: [name], max_age=1, clock=clock, max_entries=2)
    for name in "abc":
        await cache.groups(name)
    clock.now += 2
    await cache.groups("d")
    assert sorted(cache._entries) == ["d"]


@pytest.mark.parametrize(
    ("status", "body", "groups"),
    [
        (200, b'{"name": "ann", "groups": ["lqcd", "theory"]}', ["lqcd", "theory"]),
        (200, b'{"name": "ann"}', []),
        (404, b'{"status": 404, "message": "no such user"}', []),
        (403, b'{"status": 403, "message": "missing scope"}', []),
        (500, b"oops", []),
    ],
)
async def test_a_users_groups_as_the_hub_tells_and_none_on_a_refusal(status, body, groups):
    seen = []

    async def fetch(method, url, headers, data):
        seen.append((method, url, headers["Authorization"]))
        return status, body

    hub = HubSource("http://hub/hub/api", "svc-token", fetch=fetch)
    assert await hub.groups_of("a n/n") == groups
    assert seen == [("GET", "http://hub/hub/api/users/a%20n%2Fn", "token svc-token")]


async def test_an_unreachable_hub_is_not_an_empty_membership():
    async def fetch(method, url, headers, data):
        raise OSError("connection refused")

    with pytest.raises(HubUnreachable, match="not reachable"):
        await HubSource("http://hub/hub/api", "t", fetch=fetch).groups_of("ann")
