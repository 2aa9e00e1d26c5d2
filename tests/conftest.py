"""Shared test settings: real services are required in CI (LATTICEHUB_REQUIRE_SERVICES=1)."""

import os

import pytest

REQUIRE_SERVICES = os.environ.get("LATTICEHUB_REQUIRE_SERVICES") == "1"


def service_missing(what: str, fix: str) -> None:
    """Skip locally, fail in CI, when a real service the test needs is not there."""
    message = f"{what} is not available ({fix})"
    if REQUIRE_SERVICES:
        pytest.fail(f"LATTICEHUB_REQUIRE_SERVICES=1 but {message}", pytrace=False)
    pytest.skip(message)
