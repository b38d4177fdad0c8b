"""Every database call of the pipeline, retried while the database is briefly away.

A job's statements run through :func:`write` (a fenced transaction), :func:`read` (a
connection) or :func:`call` (any database call, e.g. a repository function that takes
the engine). Each retries the *whole* unit while it raises a retryable
:class:`~kairo_ingest.errors.DatabaseError` (``DatabaseUnavailableError``: a dropped
connection, a restart, a failover), so a short outage costs no job attempt.

* **Backoff**: full jitter, ``uniform(0, min(cap, base * 2**n))`` (domain/retry.py):
  retries of many jobs do not hit a recovering server in step.
* **Bound**: a retry never starts after the policy's deadline (its ``budget_seconds``
  from the first failure, on the injectable monotonic clock). The composition root sets
  the budget to half the lease (:meth:`Policy.for_lease`): the heartbeat fails during the
  outage too, so the lease ends at most ``lease_seconds`` after its last extension
  (at most a beat interval, a third of the lease, before the outage); retrying past
  half the lease would be writing on a lease about to be lost. The last error is then
  raised, as it would have been without retries.
* **What is retried is safe to repeat**. A transaction whose COMMIT's answer was lost
  may have committed. Page writes are idempotent (raw items ``ON CONFLICT DO NOTHING``,
  counts and evidence only for rows that were new), run updates set values, and a new
  intent is looked up before it is inserted (``pipeline/pg_runs.py``). Apify is never called
  inside a unit, so a retried unit never pays twice.
* Not retried: anything else, a :class:`~kairo_ingest.errors.LeaseLostError` above all
  (a lost lease is final), ``DatabaseValueError`` (the same value fails again), and
  cancellation (the sleep is cancellable).

Driver errors are translated into ``errors`` at the ``db`` boundary, never here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock as clocks
from kairo_ingest import errors, logs, tracing
from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import jobs as queue_jobs

T = TypeVar("T")
log = logs.get(__name__)

_JITTER = random.Random()

LEASE_SHARE = 0.5
"""The share of the lease one unit may spend retrying (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class Policy:
    budget_seconds: float = 10.0
    base_seconds: float = 0.1
    cap_seconds: float = 2.0
    clock: clocks.Clock = clocks.SYSTEM
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # One generator for every policy: a policy is made per job, and seeding a fresh
    # generator from os.urandom each time cost more than the job's own read.
    rng: random.Random = _JITTER

    @classmethod
    def for_lease(cls, lease_seconds: float, clock_: clocks.Clock = clocks.SYSTEM) -> Policy:
        return cls(budget_seconds=max(0.0, lease_seconds * LEASE_SHARE), clock=clock_)

    def delay(self, retry: int) -> float:
        """The jittered wait before retry number ``retry`` (0 for the first)."""
        return retry_rules.backoff_seconds(
            retry + 1, base_seconds=self.base_seconds, cap_seconds=self.cap_seconds, rng=self.rng
        )


DEFAULT = Policy()


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, errors.DatabaseError) and exc.retryable


async def call(policy: Policy, fn: Callable[[], Awaitable[T]], *, operation: str) -> T:
    """``await fn()``, again while it raises a retryable database error, within the budget."""
    try:
        return await fn()
    except errors.DatabaseError as exc:
        if not retryable(exc):
            raise
        first = exc
    deadline = clocks.Deadline.after(policy.budget_seconds, policy.clock)
    retry = 0
    failure: errors.DatabaseError = first
    while True:
        wait = policy.delay(retry)
        if wait >= deadline.remaining():
            log.warning("db_retry_gave_up", operation=operation, retries=retry)
            raise failure
        log.info("db_retry", operation=operation, retry=retry + 1, wait_seconds=round(wait, 3))
        retry += 1
        # One span per retry: the error that asked for it, the backoff, the attempt after.
        with tracing.span(
            f"db retry {operation}",
            {
                "db.operation.name": operation,
                "kairo.retry": retry,
                "kairo.retry.wait_seconds": round(wait, 3),
                "kairo.retry.cause": errors.classify(failure)[0].value,
            },
        ) as retry_span:
            await policy.sleep(wait)
            try:
                return await fn()
            except errors.DatabaseError as exc:
                if not retryable(exc):
                    raise
                tracing.fail(retry_span, exc)
                failure = exc


async def write(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    fn: Callable[[sa_async.AsyncConnection], Awaitable[T]],
    *,
    policy: Policy,
    operation: str,
) -> T:
    """``fn(conn)`` in a transaction that first checks the lease (fencing), retried whole."""

    async def unit() -> T:
        async with engine.begin() as conn:
            await queue_jobs.fence(conn, lease)
            return await fn(conn)

    return await call(policy, unit, operation=operation)


async def read(
    engine: sa_async.AsyncEngine,
    fn: Callable[[sa_async.AsyncConnection], Awaitable[T]],
    *,
    policy: Policy,
    operation: str,
) -> T:
    """``fn(conn)`` on an AUTOCOMMIT connection (no fence: reads change nothing), retried
    whole. Autocommit spares each read its BEGIN and ROLLBACK round trips."""

    async def unit() -> T:
        async with db_engine.autocommit(engine) as conn:
            return await fn(conn)

    return await call(policy, unit, operation=operation)
