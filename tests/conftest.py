"""Shared test settings: real services are required in CI (LATTICEHUB_REQUIRE_SERVICES=1)."""

import os
import secrets
import time
import warnings

import pytest
import sqlalchemy

REQUIRE_SERVICES = os.environ.get("LATTICEHUB_REQUIRE_SERVICES") == "1"


def service_missing(what: str, fix: str) -> None:
    """Skip locally, fail in CI, when a real service the test needs is not there."""
    message = f"{what} is not available ({fix})"
    if REQUIRE_SERVICES:
        pytest.fail(f"LATTICEHUB_REQUIRE_SERVICES=1 but {message}", pytrace=False)
    pytest.skip(message)


def _postgres_url() -> tuple[str, tuple[str, str]]:
    """A fresh database on the test PostgreSQL: (its URL, (server URL, name) to drop)."""
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
    """Drop a database made by :func:`_postgres_url`.

    ``WITH (FORCE)`` ends our own leftover connections, but it refuses while an autovacuum
    worker (a process of no role we belong to) happens to be in the database, so retry for a
    few seconds: the worker is done with a test-sized database by then.
    """
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
                return
            except sqlalchemy.exc.DBAPIError as e:
                if time.monotonic() > deadline:
                    warnings.warn(f"test database {db} left behind: {e.orig}", stacklevel=2)
                    return
                time.sleep(0.3)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_uri(request, tmp_path):
    """A tracking database URI: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tracking.sqlite'}"
        return
    url, (admin_url, db) = _postgres_url()
    yield url
    _drop(admin_url, db)
