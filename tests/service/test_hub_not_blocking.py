"""No request to the Hub blocks the experiments service's event loop.

The service runs with the real ``HubOAuth`` and its real group lookup against a stand-in
Hub (a tornado app in its own thread) that takes a second to answer for one user. While that
user's request waits for the Hub (who they are, then which groups they are in), other
requests are answered at once; a blocking call would hold them until the slow one ends.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from jupyterhub.services.auth import HubOAuth
from tornado import web
from tornado.httpserver import HTTPServer

from hub_ext.experiments.app import hub_group_lookup
from hub_ext.experiments.store import SqlStore
from tests.hub import free_port
from tests.service.fakehub import PREFIX, FakeHubAuth, experiments, serving

#: Seconds the stand-in Hub takes for the slow user (each of two requests).
SLOW_S = 1.0
SERVICE_TOKEN = "svc-experiments"
#: token -> (model as ``GET /hub/api/user`` shows it: no groups, seconds to answer)
TOKENS = {
    "tok-slow": ({"kind": "user", "name": "slow", "admin": False, "scopes": []}, SLOW_S),
    "tok-fast": ({"kind": "user", "name": "fast", "admin": False, "scopes": []}, 0.0),
}
GROUPS = {"slow": (["lqcd"], SLOW_S), "fast": (["lqcd"], 0.0)}


class WhoAmI(web.RequestHandler):
    """``GET /hub/api/user``: the model of the token in ``Authorization`` (403 if unknown)."""

    async def get(self) -> None:
        token = self.request.headers.get("Authorization", "").removeprefix("token ")
        if token not in TOKENS:
            raise web.HTTPError(403)
        model, delay = TOKENS[token]
        self.settings["calls"].append(("user", model["name"], time.monotonic()))
        await asyncio.sleep(delay)
        self.write(model)


class UserModel(web.RequestHandler):
    """``GET /hub/api/users/{name}``: the user's groups, for the service's own token."""

    async def get(self, name: str) -> None:
        if self.request.headers.get("Authorization") != f"token {SERVICE_TOKEN}":
            raise web.HTTPError(403)
        if name not in GROUPS:
            raise web.HTTPError(404)
        groups, delay = GROUPS[name]
        self.settings["calls"].append(("groups", name, time.monotonic()))
        await asyncio.sleep(delay)
        self.write({"kind": "user", "name": name, "groups": groups})


@pytest.fixture
def hub():
    """The stand-in Hub's API URL and the calls it answered."""
    port, calls = free_port(), []

    def make() -> HTTPServer:
        app = web.Application(
            [("/hub/api/user", WhoAmI), ("/hub/api/users/([^/]+)", UserModel)], calls=calls
        )
        server = HTTPServer(app)
        server.listen(port, "127.0.0.1")
        return server

    with serving(make):
        yield f"http://127.0.0.1:{port}/hub/api", calls


@pytest.fixture
def url(hub, tmp_path):
    api_url, _ = hub
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    project = store.create_project("shared", owner="slow", group="lqcd")
    auth = HubOAuth(
        api_token=SERVICE_TOKEN, api_url=api_url, oauth_client_id="service-experiments",
        base_url=PREFIX, hub_prefix="/hub/", cache_max_age=4,
    )  # fmt: skip
    lookup = hub_group_lookup(api_url, SERVICE_TOKEN)
    with experiments(store, tmp_path / "blobs", hub_auth=auth, group_lookup=lookup) as base:
        yield f"{base}/api/v1/projects/{project.id}"
    store.close()


def _get(url: str, token: str | None) -> tuple[int, float, float]:
    """``(status, start, end)`` of a GET as ``token`` (monotonic seconds)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    start = time.monotonic()
    status = requests.get(url, headers=headers, timeout=30).status_code
    return status, start, time.monotonic()


def _wait_for(calls: list, call: tuple[str, str]) -> None:
    """Until the stand-in Hub has begun to answer ``call`` (``(kind, name)``)."""
    deadline = time.monotonic() + 10
    while call not in [c[:2] for c in calls]:
        assert time.monotonic() < deadline, f"the Hub was never asked {call}"
        time.sleep(0.01)


def test_requests_are_answered_while_another_waits_for_a_slow_hub(hub, url):
    _, calls = hub
    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(_get, url, "tok-slow")
        _wait_for(calls, ("user", "slow"))  # the Hub identifies the slow caller's token
        during_identity = pool.submit(_get, url, "tok-fast").result()
        _wait_for(calls, ("groups", "slow"))  # ... then tells their groups
        during_groups = pool.submit(_get, url, "tok-fast")
        anonymous = pool.submit(_get, url, None)
        during_groups, anonymous = during_groups.result(), anonymous.result()
        slow_status, slow_start, slow_end = slow.result()
    assert (slow_status, during_identity[0], during_groups[0], anonymous[0]) == (
        200, 200, 200, 401,
    )  # fmt: skip
    # the slow caller waited for both of the Hub's answers, in prepare, without the loop
    assert slow_end - slow_start >= 2 * SLOW_S
    for _status, start, end in (during_identity, during_groups, anonymous):
        assert end - start < SLOW_S / 2, "a request waited for another's Hub call"
        assert end < slow_end


def test_groups_are_asked_once_within_the_membership_age(hub, url):
    _, calls = hub
    for _ in range(3):
        assert _get(url, "tok-fast")[0] == 200
    # identity (HubAuth's cache) and groups (the service's cache) are each asked once
    assert [c[:2] for c in calls] == [("user", "fast"), ("groups", "fast")]


def test_a_user_the_hub_does_not_let_the_service_read_is_in_no_group(hub, url):
    TOKENS["tok-gone"] = ({"kind": "user", "name": "gone", "admin": False}, 0.0)
    try:  # /users/gone is a 404: no groups, so the group's project is not shown
        assert _get(url, "tok-gone")[0] == 404
    finally:
        del TOKENS["tok-gone"]


def test_an_unreachable_hub_for_groups_is_a_502_not_an_empty_membership(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    project = store.create_project("shared", owner="ann", group="lqcd")
    users = {"tok-ann": {"kind": "user", "name": "ann", "admin": False}}  # groups not shown
    lookup = hub_group_lookup(f"http://127.0.0.1:{free_port()}/hub/api", SERVICE_TOKEN)
    with experiments(
        store, tmp_path / "blobs", hub_auth=FakeHubAuth(users), group_lookup=lookup
    ) as base:
        r = requests.get(
            f"{base}/api/v1/projects/{project.id}",
            headers={"Authorization": "token tok-ann"},
            timeout=30,
        )
    store.close()
    assert r.status_code == 502
    assert r.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "not reachable" in r.json()["message"]


def test_the_login_redirect_and_the_job_token_path_ask_no_hub(hub, url):
    """A browser without a session is sent to log in; a job token is never shown to the Hub."""
    _, calls = hub
    r = requests.get(url, headers={"Accept": "text/html"}, allow_redirects=False, timeout=30)
    assert r.status_code == 302 and "/hub/api/oauth2/authorize" in r.headers["Location"]
    r = requests.get(url, headers={"Authorization": "token lhjob_x"}, timeout=30)
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    assert calls == []
