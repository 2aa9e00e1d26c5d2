"""Fixtures of the culling tests: the docker tier's engine, network and real Hubs.

The unit tests here need none of them; the docker tier (``docker``) runs a real Hub with the
culler service (tests/hub.py) on the test run's own Docker network.
"""

from __future__ import annotations

import pytest

from tests.docker.conftest import (  # noqa: F401 - fixtures
    docker_client,
    make_hub,
    test_network,
)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)  # make_hub dumps logs when a test failed
    return report
