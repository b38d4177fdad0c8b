"""What the finisher does with a final write that fails, by the kind of failure.

Only a refused value makes a job's result unstorable (the job alone fails). Any other
permanent database error abandons the write: the lease expires and the reaper requeues
the job, so a succeeded job is never stored as failed. At shutdown, retries stop and
every waiting job task is answered.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import finisher as finisher_module
from support import outcomes

POLICY = finisher_module.RetryPolicy(base_seconds=1, cap_seconds=1, snooze_seconds=1)


def _failing(exc: BaseException):  # type: ignore[no-untyped-def]
    async def write(_conn: object) -> set[uuid.UUID]:
        raise exc

    return write


async def test_a_refused_value_is_reported_as_refused(engine: sa_async.AsyncEngine) -> None:
    finisher = finisher_module.Finisher(engine, POLICY)
    with pytest.raises(finisher_module._RefusedError):
        await finisher._persist(_failing(errors.DatabaseValueError("22P02")), "complete")


async def test_another_permanent_database_error_never_fails_a_succeeded_job(
    engine: sa_async.AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale plan, a failover or any other unexpected error is not the job's fault: the
    write is abandoned and the job stays running until its lease expires."""
    await queue_jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(await queue_jobs.claim(engine, owner="w", limit=1, lease_seconds=30))

    async def broken(*_: object, **__: object) -> set[uuid.UUID]:
        raise errors.DatabaseError("XX000: internal error")

    monkeypatch.setattr(endings, "complete_many", broken)
    finisher = finisher_module.Finisher(engine, POLICY)
    written = finisher.submit(lease, evidence_status={"refreshed": []}, error=None)
    running = asyncio.create_task(finisher.run())
    async with asyncio.timeout(30):
        assert await written is False
        finisher.close()
        await running
    job = await queue_jobs.get(engine, lease.job_id)
    assert job is not None
    assert (job.status, job.last_error) == ("running", None)


async def test_closing_stops_retries_and_answers_every_waiting_job(
    engine: sa_async.AsyncEngine,
) -> None:
    finisher = finisher_module.Finisher(engine, POLICY)
    lease = queue_jobs.Lease(
        job_id=uuid.uuid4(),
        token=uuid.uuid4(),
        owner="w",
        kind="k",
        brand_id=None,
        attempts=1,
        max_attempts=3,
        params={},
    )

    async def unavailable(*_: object, **__: object) -> set[uuid.UUID]:
        raise errors.DatabaseUnavailableError("down")

    finisher._complete = lambda pending: finisher._persist(unavailable, "complete")  # type: ignore[method-assign]
    first = finisher.submit(lease, evidence_status={}, error=None)
    second = finisher.submit(lease, evidence_status={}, error=None)
    running = asyncio.create_task(finisher.run())
    finisher.close()

    async def answers() -> tuple[bool, bool]:
        both = (await first, await second)
        await running
        return both

    assert await outcomes.within(30, answers(), "the finisher's close") == (False, False)
