"""The conformance suite runs once per adapter of the queue port: select one with
``-k memory`` or ``-k postgres``. The memory parametrizations never ask for the database
fixtures, so they run without PostgreSQL."""

from __future__ import annotations

import port_harness
import pytest


# The PostgreSQL run asks for the database only when it runs (getfixturevalue), so it says
# itself that it is slow (tests/conftest.py marks the others by their fixtures).
@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.slow)])
def harness(request: pytest.FixtureRequest) -> port_harness.Harness:
    if request.param == "memory":
        return port_harness.MemoryHarness()
    return port_harness.PostgresHarness(request.getfixturevalue("engine"))
