"""The conformance suites run once per adapter of their port (the queue, the run store):
select one with ``-k memory`` or ``-k postgres``. The memory parametrizations never ask
for the database fixtures, so they run without PostgreSQL."""

from __future__ import annotations

import port_harness
import pytest
import run_store_harness


# The PostgreSQL run asks for the database only when it runs (getfixturevalue), so it says
# itself that it is slow (tests/conftest.py marks the others by their fixtures).
@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.slow)])
def harness(request: pytest.FixtureRequest) -> port_harness.Harness:
    if request.param == "memory":
        return port_harness.MemoryHarness()
    return port_harness.PostgresHarness(request.getfixturevalue("engine"))


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.slow)])
def _run_store_adapter(request: pytest.FixtureRequest) -> run_store_harness.Unstarted:
    if request.param == "memory":
        return run_store_harness.MemoryHarness()
    return run_store_harness.PostgresHarness(request.getfixturevalue("engine"))


@pytest.fixture
async def run_harness(
    _run_store_adapter: run_store_harness.Unstarted,
) -> run_store_harness.Harness:
    return await _run_store_adapter.start()
