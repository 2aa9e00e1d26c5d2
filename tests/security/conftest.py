"""Fixtures for the security tier: attacks as an ordinary user against the real stack.

Every test here is marked ``security`` (added at collection) and runs against a real Hub with
configurable-http-proxy and the managed services from the repository's
``jupyterhub_config.py``, on a Docker network the run creates. The users:

- ``ann``, ``bob``: members of ``lqcd`` (the victims' group);
- ``eve``: a member of ``nuclear`` only (the attacker from another group);
- ``mallory``: a member of ``lqcd`` who attacks her own group's service.

Each holds an ordinary API token (the user's own scopes), as a notebook or a script would.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from tests.docker.conftest import (  # noqa: F401 - fixtures shared with the docker tier
    docker_client,
    make_hub,
    pytest_runtest_makereport,
    remove_hub_objects,
    swarm_node,
    test_network,
)
from tests.hub import HubProcess

GROUPS = {"lqcd": ["ann", "bob", "mallory"], "nuclear": ["eve"]}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory belongs to the security tier."""
    for item in items:
        if "tests/security/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.security)


@dataclass
class Stack:
    """A running Hub with the test users, their tokens and helpers to call the services."""

    hub: HubProcess
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def experiments(self) -> str:
        """The native API's base URL through the proxy."""
        return self.hub.experiments

    def call(self, user: str, method: str, path: str, **kwargs) -> requests.Response:
        """Call the experiments API as ``user`` with the user's ordinary token."""
        headers = {"Authorization": f"token {self.tokens[user]}", **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 60)
        return requests.request(method, f"{self.experiments}{path}", headers=headers, **kwargs)


def start_stack(hub: HubProcess) -> Stack:
    """Start ``hub``, create the groups and users, and mint each user an ordinary token."""
    hub.start()
    users = sorted({u for members in GROUPS.values() for u in members})
    hub.create_users(users)
    for group, members in GROUPS.items():
        hub.create_group(group, members)
    hub.wait_experiments()
    return Stack(hub, {u: hub.user_token(u) for u in users})


@pytest.fixture
def stack(make_hub) -> Iterator[Stack]:  # noqa: F811 - the docker tier's fixture
    """A fresh real stack per test (its own Hub, services and state)."""
    yield start_stack(make_hub(hub_id=f"s{secrets.token_hex(4)}"))
