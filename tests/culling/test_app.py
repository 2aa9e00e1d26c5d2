"""A round against a stand-in Hub API (in-process, 127.0.0.1) with the real ``cull_idle``."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from tornado import web
from tornado.httpserver import HTTPServer

from hub_ext.common.hub_client import HubError, HubSource
from hub_ext.culling.app import cull_round
from latticehub.policy import parse_policy
from tests.hub import free_port

LOG = logging.getLogger("test-culler")
TOKEN = "culler-token"


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


class FakeHub:
    """Users, groups and servers of a Hub, as its REST API shows them."""

    def __init__(self):
        self.users: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}
        self.stopped: list[str] = []

    def add(self, user, groups, *, idle, age=None, server="", options=None, pending=None):
        model = self.users.setdefault(user, {"name": user, "groups": groups, "servers": {}})
        url = f"/user/{user}/{server + '/' if server else ''}"
        model["servers"][server] = {
            "name": server,
            "ready": pending is None,
            "pending": pending,
            "url": url,
            "started": ago(age if age is not None else idle + 10),
            "last_activity": ago(idle),
            "user_options": options or {},
        }

    def running(self) -> set[str]:
        return {f"{u}/{s}" for u, m in self.users.items() for s in m["servers"]}


class Base(web.RequestHandler):
    def prepare(self):
        if self.request.headers.get("Authorization") != f"token {TOKEN}":
            raise web.HTTPError(403)

    @property
    def hub(self) -> FakeHub:
        return self.settings["hub"]


class Root(Base):
    def get(self):
        self.write({"version": "5.3.0"})


class Users(Base):
    def get(self):
        state = self.get_argument("state", None)
        items = []
        for user in self.hub.users.values():
            servers = user["servers"]
            if state == "ready":
                servers = {k: v for k, v in servers.items() if v["ready"]}
            if state in ("ready", "active") and not servers:
                continue
            items.append({**user, "servers": servers, "admin": False, "last_activity": None})
        self.write({"items": items, "_pagination": {"offset": 0, "limit": 200, "next": None}})


class Group(Base):
    def get(self, name):
        if name not in self.hub.groups:
            raise web.HTTPError(404)
        self.write({"name": name, "properties": self.hub.groups[name]})


class Server(Base):
    def delete(self, user, name=""):
        self.hub.users[user]["servers"].pop(name)
        self.hub.stopped.append(f"{user}/{name}")
        self.set_status(204)


@pytest_asyncio.fixture(loop_scope="function")
async def hub():
    fake = FakeHub()
    app = web.Application(
        [
            (r"/hub/api/", Root),
            (r"/hub/api/users", Users),
            (r"/hub/api/groups/([^/]+)", Group),
            (r"/hub/api/users/([^/]+)/server", Server),
            (r"/hub/api/users/([^/]+)/servers/([^/]+)", Server),
        ],
        hub=fake,
    )
    server = HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    fake.api = HubSource(f"http://127.0.0.1:{port}/hub/api", TOKEN)
    yield fake
    server.stop()


async def run(hub, limits, **kwargs):
    policy = parse_policy({"group_limits": limits})
    return await cull_round(hub=hub.api, policy=policy, api_token=TOKEN, log=LOG, **kwargs)


async def test_each_group_is_judged_by_its_own_timeout(hub):
    hub.add("ann", ["fast"], idle=200)
    hub.add("ben", ["slow"], idle=200)
    hub.add("cat", ["plain"], idle=10**5)
    hub.add("dan", ["fast"], idle=30)
    rules = await run(
        hub,
        {
            "fast": {"idle_timeout": 100},
            "slow": {"idle_timeout": 3600},
            "plain": {"max_servers": 3},
        },
    )
    assert hub.stopped == ["ann/"]
    assert hub.running() == {"ben/", "cat/", "dan/"}
    assert set(rules) == {"fast", "slow"}
    assert rules["fast"].running == 2


@pytest.mark.parametrize(("servers", "culled"), [(1, 0), (2, 2)])
async def test_a_busy_group_culls_sooner(hub, servers, culled):
    limits = {"g": {"max_servers": 2, "idle_timeout": 3600, "idle_timeout_busy": 60}}
    for i in range(servers):
        hub.add(f"u{i}", ["g"], idle=120)
    rules = await run(hub, limits)
    assert len(hub.stopped) == culled
    assert rules["g"].busy is (servers == 2)


async def test_a_pending_spawn_counts_for_busy_but_is_never_culled(hub):
    limits = {"g": {"max_servers": 2, "idle_timeout": 3600, "idle_timeout_busy": 60}}
    hub.add("ann", ["g"], idle=120)
    hub.add("ben", ["g"], idle=120, pending="spawn")
    await run(hub, limits)
    assert hub.stopped == ["ann/"]


async def test_max_servers_lowered_by_a_manager_makes_the_group_busy(hub):
    limits = {"g": {"max_servers": 4, "idle_timeout": 3600, "idle_timeout_busy": 60}}
    hub.add("ann", ["g"], idle=120)
    hub.add("ben", ["g"], idle=120)
    rules = await run(hub, limits)
    assert hub.stopped == [] and rules["g"].busy is False
    hub.groups["g"] = {"latticehub": {"max_servers": 2}}
    rules = await run(hub, limits)
    assert sorted(hub.stopped) == ["ann/", "ben/"]
    assert (rules["g"].busy, rules["g"].max_servers) == (True, 2)


async def test_max_age_stops_an_active_server(hub):
    hub.add("ann", ["g"], idle=1, age=7200)
    hub.add("ben", ["g"], idle=1, age=600)
    await run(hub, {"g": {"max_age": 3600}})
    assert hub.stopped == ["ann/"]


async def test_servers_are_charged_to_the_chosen_group_and_named_servers_count(hub):
    limits = {"lqcd": {"idle_timeout": 3600}, "nuclear": {"idle_timeout": 60}}
    hub.add("ann", ["lqcd", "nuclear"], idle=120, options={"group": "nuclear"})
    hub.add("ann", ["lqcd", "nuclear"], idle=120, server="big")  # default: lqcd
    hub.add("ben", ["nuclear"], idle=120, server="small")
    await run(hub, limits)
    assert sorted(hub.stopped) == ["ann/", "ben/small"]
    assert hub.running() == {"ann/big"}


async def test_no_culled_group_with_servers_means_no_culler_round(hub):
    calls = []

    async def cull(*args, **kwargs):
        calls.append((args, kwargs))

    hub.add("cat", ["plain"], idle=10**5)
    policy = parse_policy({"group_limits": {"plain": {}, "fast": {"idle_timeout": 1}}})
    await cull_round(hub=hub.api, policy=policy, api_token=TOKEN, log=LOG, cull=cull)
    assert calls == []
    hub.add("ann", ["fast"], idle=5)
    await cull_round(hub=hub.api, policy=policy, api_token=TOKEN, log=LOG, cull=cull)
    ((args, kwargs),) = calls
    assert args[1:3] == (TOKEN, 1)
    assert kwargs["max_age"] == 0 and kwargs["cull_users"] is False


async def test_a_hub_that_refuses_the_token_is_reported():
    policy = parse_policy({"group_limits": {"g": {"idle_timeout": 1}}})
    down = HubSource(f"http://127.0.0.1:{free_port()}/hub/api", TOKEN)
    with pytest.raises(HubError) as info:
        await cull_round(hub=down, policy=policy, api_token=TOKEN, log=LOG)
    assert info.value.status_code == 502


def test_help_lists_the_options():
    result = subprocess.run(
        [sys.executable, "-m", "hub_ext.culling", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--interval", "--busy-fraction", "--policy", "--once", "--api-url"):
        assert option in result.stdout


@pytest.mark.slow
def test_service_exits_when_its_hub_dies(tmp_path):
    pid_file = tmp_path / "culler.pid"
    log_file = tmp_path / "culler.log"
    env = {
        **os.environ,
        "JUPYTERHUB_API_TOKEN": "t",
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",
        "LATTICEHUB_CULLING_POLICY": json.dumps({"group_limits": {"g": {"idle_timeout": 5}}}),
        "LATTICEHUB_CULL_INTERVAL": "30",
    }
    # a stand-in "Hub": starts the service as JupyterHub does (new session), then waits
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         f"log = open({str(log_file)!r}, 'w')\n"
         "p = subprocess.Popen([sys.executable, '-m', 'hub_ext.culling'], start_new_session=True,\n"
         "                     stdout=log, stderr=log)\n"
         f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
         "time.sleep(600)\n"],
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline, "the stand-in Hub did not start the culler"
            time.sleep(0.1)
        culler = int(pid_file.read_text())
        # the culler runs its first round (the Hub API is down: logged)
        deadline = time.monotonic() + 30
        while "round skipped" not in log_file.read_text():
            assert time.monotonic() < deadline, f"no first round: {log_file.read_text()}"
            assert os.path.exists(f"/proc/{culler}"), f"the culler exited: {log_file.read_text()}"
            time.sleep(0.1)
        assert os.path.exists(f"/proc/{culler}"), "the culler exited on its own"
        parent.send_signal(signal.SIGKILL)  # as a Hub killed with SIGKILL
        parent.wait(10)

        def gone() -> bool:
            try:
                with open(f"/proc/{culler}/stat") as f:
                    return f.read().split()[2] == "Z"  # a zombie until init reaps it
            except FileNotFoundError:
                return True

        deadline = time.monotonic() + 10
        while not gone():
            assert time.monotonic() < deadline, "the culler outlived its Hub"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
        if pid_file.exists() and pid_file.read_text():
            try:  # never leave the culler behind, even when the test failed
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
