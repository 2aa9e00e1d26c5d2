"""The experiments app in-process, with a stand-in for Hub authentication.

Only this tier replaces the Hub: tests/docker runs the same app behind a real Hub. The
stand-ins and the harness live in :mod:`tests.service.fakehub`.
"""

from __future__ import annotations

import pytest

from hub_ext.experiments.store import SqlStore
from tests.service.fakehub import USERS, FakeHubAuth, experiments

__all__ = ["USERS", "FakeHubAuth", "service"]


@pytest.fixture
def service(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'tracking.sqlite'}")
    with experiments(store, tmp_path / "blobs") as url:
        yield url, store
    store.close()
