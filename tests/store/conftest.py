"""The store suite runs on SQLite and PostgreSQL through ``store_uri`` (tests/conftest.py)."""

from __future__ import annotations

import pytest

from hub_ext.experiments.store import SqlStore


@pytest.fixture
def store(store_uri):
    store = SqlStore(store_uri)
    yield store
    store.close()
