"""Browser tier: headless Debian Chromium driven by Playwright against the dashboard.

Most tests run the experiments app in-process with a stand-in Hub that identifies a browser
by a test cookie and, like HubOAuth, refuses cookie authentication of a request that needs
an XSRF token and lacks it. One test (test_dashboard_hub.py) runs behind a real Hub.

Screenshots go to ``$LATTICEHUB_ARTIFACTS/screenshots`` (default: pytest's tmp dir); with
``LATTICEHUB_UPDATE_DOCS_IMG=1`` they are also copied to docs/img/ for the README.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from jupyterhub._xsrf_utils import _needs_check_xsrf
from jupyterhub.services.auth import HubOAuth
from tornado import web
from tornado.httpserver import HTTPServer

from hub_ext.experiments.app import make_app
from hub_ext.experiments.blobs import BlobStore
from hub_ext.experiments.jobs.executors import LocalExecutor
from hub_ext.experiments.jobs.manager import JobManager
from hub_ext.experiments.jobs.spec import parse_job_limits
from hub_ext.experiments.jobs.store import SqlJobStore
from hub_ext.experiments.live import LiveBus
from hub_ext.experiments.store import SqlStore
from tests.conftest import service_missing
from tests.docker.conftest import docker_client, make_hub, test_network  # noqa: F401
from tests.hub import ROOT, free_port
from tests.service.conftest import USERS

CHROMIUM = os.environ.get("LATTICEHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PREFIX = "/services/experiments/"
COOKIE = "lh-test-user"
VIEWPORT = {"width": 1280, "height": 800}
GROUPS = {name: model["groups"] for name, model in USERS.items()}
JOB_LIMITS = {"lqcd": {"executors": ["local"], "max_jobs": 2, "max_cpus": 2, "max_time": "0:10:00"}}


class CookieHubAuth(HubOAuth):
    """A stand-in for the Hub: ``Authorization: token X`` or the cookie ``lh-test-user=X``.

    It is a ``HubOAuth`` (so handlers take its XSRF token ids and checks), that identifies
    users without a Hub. Cookie-authenticated requests that need an XSRF check (every
    non-GET, and fetch / EventSource GETs) are identified only with a valid ``_xsrf``
    argument or ``X-XSRFToken`` header, as ``HubOAuth._get_user_cookie`` does.
    """

    access_scopes = None

    def __init__(self):
        super().__init__(
            api_token="unused", oauth_client_id="service-experiments", base_url=PREFIX,
            hub_prefix="/hub/", api_url="http://127.0.0.1:9/hub/api",
        )  # fmt: skip

    def get_user(self, handler, *, sync=True):
        scheme, _, token = handler.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer") and token:
            handler._token_authenticated = True
            return USERS.get(token.strip())
        token = handler.get_cookie(COOKIE)
        if not token:
            return None
        if _needs_check_xsrf(handler):
            try:
                handler.check_xsrf_cookie()
            except web.HTTPError:
                return None
        return USERS.get(token)

    def _get_xsrf_token_id(self, handler):
        return f"test-session:{handler.get_cookie(COOKIE, '')}".encode()

    def _persist_url_token_if_set(self, handler):
        pass


@dataclass
class Service:
    """The in-process experiments service: ``url`` ends with the prefix's slash."""

    url: str
    store: SqlStore

    def api(self, method: str, path: str, user: str = "ann", **kwargs) -> requests.Response:
        """Call the native API with a user's token."""
        headers = {"Authorization": f"token tok-{user}"}
        return requests.request(
            method, f"{self.url}api/v1/{path}", headers=headers, timeout=30, **kwargs
        )


def serve_dashboard(tmp_path: Path, *, job_command: list[str] | None = None):
    """Start the app (and, with ``job_command``, a local-executor job manager) in a thread.

    Returns ``(service, stop)``.
    """
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    port = free_port()
    url = f"http://127.0.0.1:{port}{PREFIX}"
    live = LiveBus()
    manager = None
    if job_command is not None:
        manager = JobManager(
            store=store,
            jobs=SqlJobStore(store.engine),
            executors={"local": LocalExecutor(max_concurrent=2, kill_grace_s=2)},
            limits=parse_job_limits(JOB_LIMITS),
            jobs_dir=tmp_path / "jobs",
            tracking_url=url.rstrip("/"),
            command=job_command,
            validate_config=False,
            notify=live.notify,
        )
    ready = threading.Event()
    state = {}

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = make_app(
            store=store,
            prefix=PREFIX,
            hub_auth=CookieHubAuth(),
            group_lookup=lambda name: GROUPS.get(name, []),
            log=logging.getLogger("test-dashboard"),
            blobs=BlobStore(tmp_path / "blobs", max_size=1024 * 1024),
            jobs=manager,
            live=live,
        )
        server = HTTPServer(app, max_body_size=2 * 1024 * 1024)
        server.listen(port, "127.0.0.1")
        state["loop"] = loop
        if manager is not None:
            state["poller"] = loop.create_task(manager.run_forever(0.2))
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)

    def stop():
        loop = state["loop"]
        if "poller" in state:
            loop.call_soon_threadsafe(state["poller"].cancel)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        store.close()

    return Service(url, store), stop


@pytest.fixture
def dashboard(tmp_path):
    """The experiments app in a thread, behind :class:`CookieHubAuth`."""
    service, stop = serve_dashboard(tmp_path)
    yield service
    stop()


@pytest.fixture
def dashboard_with_jobs(tmp_path):
    """The app with a local-executor job manager whose jobs sleep for a minute."""
    service, stop = serve_dashboard(
        tmp_path, job_command=[sys.executable, "-c", "import time; time.sleep(60)"]
    )
    yield service
    stop()


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per test module.

    Not per session: Playwright's sync API keeps an event loop running in the main thread
    while it lives, and later tests of other tiers call ``asyncio.run`` there.
    """
    if not os.path.exists(CHROMIUM):
        service_missing(f"Chromium at {CHROMIUM}", "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_page(chromium, request):
    """``new_page(base_url, user="ann")``: a fresh context (own cookies) and page.

    A ``user`` logs in through the stand-in cookie; ``user=None`` gives a bare browser
    (for the real Hub). Dialogs are recorded in ``page.dialogs`` and dismissed (accepted
    after ``page.accept_dialogs = True``). An uncaught JavaScript error fails the test.
    """
    contexts = []

    def factory(base_url: str, user: str | None = "ann"):
        context = chromium.new_context(viewport=VIEWPORT, base_url=base_url)
        if user is not None:
            context.add_cookies([{"name": COOKIE, "value": f"tok-{user}", "url": base_url}])
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.dialogs = []

        def on_dialog(dialog):
            page.dialogs.append(dialog.message)
            if getattr(page, "accept_dialogs", False):
                dialog.accept()
            else:
                dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        return page

    errors: list[str] = []
    yield factory
    for context in contexts:
        context.close()
    if errors:
        pytest.fail("JavaScript errors in the page:\n" + "\n".join(errors))


@pytest.fixture
def browser_page(new_page, dashboard):
    """A page of ann's, on the in-process dashboard."""
    return new_page(dashboard.url)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """Where screenshots go: $LATTICEHUB_ARTIFACTS/screenshots or a tmp dir."""
    base = os.environ.get("LATTICEHUB_ARTIFACTS")
    path = Path(base) / "screenshots" if base else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def screenshot(screenshot_dir):
    """``screenshot(page, "runs-table")``: save a PNG (and to docs/img/ when asked).

    The file is ``<prefix>-<name>.png``; ``prefix="widgets"`` for the notebook panels.
    """

    def take(page, name: str, *, prefix: str = "dashboard", **kwargs) -> Path:
        target = screenshot_dir / f"{prefix}-{name}.png"
        page.screenshot(path=str(target), **kwargs)
        if os.environ.get("LATTICEHUB_UPDATE_DOCS_IMG") == "1":
            docs = ROOT / "docs" / "img"
            docs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, docs / target.name)
        return target

    return take


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item (``rep_call``): make_hub dumps logs on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
