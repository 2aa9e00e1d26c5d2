"""The store suite runs on SQLite (always) and PostgreSQL (marker ``postgres``)."""

from __future__ import annotations

import os
import secrets

import pytest
import sqlalchemy

from hub_ext.experiments.store import SqlStore
from tests.conftest import service_missing


def _postgres_url() -> str:
    url = os.environ.get("LATTICEHUB_TEST_PG_URL")
    if not url:
        service_missing("PostgreSQL (LATTICEHUB_TEST_PG_URL)", "run scripts/services.sh")
    db = f"lh_store_{secrets.token_hex(4)}"
    try:
        engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{db}"'))
        engine.dispose()
    except sqlalchemy.exc.OperationalError as e:
        service_missing(f"PostgreSQL at {url} ({e.__class__.__name__})", "scripts/services.sh")
    return url.rsplit("/", 1)[0] + f"/{db}", (url, db)


def _drop(admin_url: str, db: str) -> None:
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_uri(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracking.sqlite'}"
        return
    url, (admin_url, db) = _postgres_url()
    yield url
    _drop(admin_url, db)


@pytest.fixture
def store(store_uri):
    store = SqlStore(store_uri)
    yield store
    store.close()
