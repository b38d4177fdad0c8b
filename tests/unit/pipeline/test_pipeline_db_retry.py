"""The pipeline's side of a database outage: one shorter than the lease costs no
attempt. Every pipeline unit of work goes through ``pipeline.tx``, which retries it whole
while the error is a retryable ``errors.DatabaseError``, with capped, jittered backoff,
never past a budget on the injected monotonic clock.

A fake engine stands in for the database: its connections fail with
``errors.DatabaseUnavailableError`` (what the ``db`` boundary raises for a dropped
connection) a given number of times.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kairo_ingest import errors
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.pipeline import tx


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeConnection:
    """Reads run in AUTOCOMMIT (``db.engine.autocommit``): the mode switch is all it does."""

    async def execution_options(self, **_: Any) -> FakeConnection:
        return self

    def __str__(self) -> str:
        return "conn"


class FlakyEngine:
    """``connect()`` fails with ``failure`` the first ``failures`` times, then works."""

    def __init__(self, failures: int, failure: Exception | None = None) -> None:
        self.failures = failures
        self.failure = failure or errors.DatabaseUnavailableError("connection was closed")
        self.attempts = 0

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[FakeConnection]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.failure
        yield FakeConnection()


def _policy(clock: FakeClock, budget_seconds: float = 30.0) -> tx.Policy:
    return tx.Policy(
        budget_seconds=budget_seconds,
        base_seconds=0.1,
        cap_seconds=2.0,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(7),
    )


async def _select_one(conn: Any) -> str:
    return f"read on {conn}"


async def test_an_outage_shorter_than_the_budget_costs_nothing() -> None:
    clock = FakeClock()
    engine = FlakyEngine(failures=6)

    result = await tx.read(engine, _select_one, policy=_policy(clock), operation="t")  # type: ignore[arg-type]

    assert result == "read on conn"
    assert engine.attempts == 7
    assert len(clock.sleeps) == 6
    # Capped exponential backoff with full jitter: each wait within [0, min(cap, base*2^n)].
    for n, wait in enumerate(clock.sleeps):
        assert 0.0 <= wait <= min(2.0, 0.1 * 2**n)
    caps = [min(2.0, 0.1 * 2**n) for n in range(len(clock.sleeps))]
    assert clock.sleeps != caps, "jittered, not in lock-step with every other job"


async def test_retrying_stops_at_the_budget_and_raises_the_last_error() -> None:
    clock = FakeClock()
    engine = FlakyEngine(failures=10**6)

    with pytest.raises(errors.DatabaseUnavailableError):
        await tx.read(engine, _select_one, policy=_policy(clock, budget_seconds=5.0), operation="t")  # type: ignore[arg-type]

    assert clock.now - 1000.0 <= 5.0, "never sleeps past the budget"
    assert 3 <= engine.attempts < 100


@pytest.mark.parametrize(
    "failure",
    [
        errors.DatabaseError("syntax error"),
        errors.DatabaseValueError("the database refused a value", sqlstate="22P02"),
        errors.LeaseLostError("lease lost"),
        KeyError("x"),
    ],
    ids=["DatabaseError", "DatabaseValueError", "LeaseLostError", "KeyError"],
)
async def test_only_retryable_database_errors_are_retried(failure: Exception) -> None:
    clock = FakeClock()
    engine = FlakyEngine(failures=1, failure=failure)

    with pytest.raises(type(failure)):
        await tx.read(engine, _select_one, policy=_policy(clock), operation="t")  # type: ignore[arg-type]

    assert engine.attempts == 1
    assert clock.sleeps == []


def test_the_budget_is_half_the_lease_on_the_injected_clock() -> None:
    clock = FakeClock()
    policy = tx.Policy.for_lease(30.0, clock)
    assert (policy.budget_seconds, policy.clock) == (15.0, clock)

    d = deps_module.Deps(
        engine=None,  # type: ignore[arg-type]
        apify=None,  # type: ignore[arg-type]
        disabled_capabilities=frozenset(),
        freshness_ttl=None,  # type: ignore[arg-type]
        run_deadline_seconds=1.0,
        source_concurrency=1,
        run_slots=None,  # type: ignore[arg-type]
        clock=clock,
        lease_seconds=12.0,
    )
    assert (d.retry_policy.budget_seconds, d.retry_policy.clock) == (6.0, clock)
