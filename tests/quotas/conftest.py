"""Fixtures of the quotas tests: the docker tier's engine and network, a real Hub, Chromium.

The unit tests here need none of them. The docker tier (``docker``) runs a real Hub with the
quotas service (tests/hub.py), the browser tier (``browser``) also a headless Chromium.
"""

from __future__ import annotations

import os
import secrets

import pytest

from tests.browser.conftest import chromium  # noqa: F401 - fixture
from tests.docker.conftest import (  # noqa: F401 - fixtures
    docker_client,
    remove_hub_objects,
    test_network,
)
from tests.hub import HubProcess, free_port

IMAGE = os.environ.get("LATTICEHUB_IMAGE", "latticehub/singleuser:latest")
ACCESS = "access:services!service=quotas"

#: Two groups, a manager of lqcd (ann), an admin (boss), members who manage nothing.
CONFIG = f"""
c.GroupLimitDockerSpawner.group_limits = {{
    "lqcd": {{"max_servers": 2, "max_servers_per_user": 1, "mem_limit": "512M",
              "cpu_limit": 0.25, "images": [{IMAGE!r}]}},
    "nuclear": {{"max_servers": 1, "mem_limit": "512M", "cpu_limit": 0.25}},
}}
# explicit: the trait's default ({{}}) would make every unlisted group chargeable
c.GroupLimitDockerSpawner.unlisted_group_limits = None
c.GroupLimitDockerSpawner.mem_limit = "512M"
c.GroupLimitDockerSpawner.spawn_queue_timeout = 0
c.Authenticator.admin_users = {{"boss"}}
c.JupyterHub.load_groups = {{
    "lqcd": {{"users": ["ann", "ben", "cat", "mallory"], "properties": {{"owner": "ann-lab"}}}},
    "nuclear": {{"users": ["dan", "erin"], "properties": {{}}}},
}}
c.JupyterHub.load_roles.append({{
    "name": "lqcd-quota-manager",
    "description": "Manage group lqcd's limits (quotas service)",
    "scopes": ["groups!group=lqcd", {ACCESS!r}],
    "users": ["ann"],
}})
# group_limits changed after jupyterhub_config.py declared the service: declare it again
from hub_ext.quotas.hubconfig import install as install_quotas
install_quotas(c)
"""


def start_quota_hub(workdir, network, *, extra: str = "") -> HubProcess:
    """A real Hub (proxy, Docker spawner, the quotas service) on the test network."""
    hub = HubProcess(
        workdir,
        hub_ip=network[1],
        network=network[0],
        hub_id=f"q{secrets.token_hex(4)}",
        extra_config=CONFIG + extra,
    )
    hub.env["LATTICEHUB_QUOTAS_PORT"] = str(free_port())
    hub.quotas = f"{hub.url}/services/quotas"
    return hub.start()


@pytest.fixture(scope="module")
def quota_hub(docker_client, test_network, tmp_path_factory):  # noqa: F811
    """One Hub for a test module; its containers are removed at the end."""
    hub = start_quota_hub(tmp_path_factory.mktemp("quotas-hub"), test_network)
    yield hub
    hub.stop()
    remove_hub_objects(docker_client, hub.env["LATTICEHUB_HUB_ID"])


@pytest.fixture(autouse=True)
def _hub_log_on_failure(request):
    """Print the module Hub's log when a test of it fails."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "quota_hub" in request.fixturenames:
        hub = request.getfixturevalue("quota_hub")
        print(f"==== hub log {hub.workdir}\n{hub.tail(150)}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def new_page(chromium):  # noqa: F811 - the imported fixture
    """``new_page(base_url)``: a fresh browser context (own cookies) and page."""
    contexts = []

    def factory(base_url: str):
        context = chromium.new_context(viewport={"width": 1280, "height": 800}, base_url=base_url)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        return page

    yield factory
    for context in contexts:
        context.close()
