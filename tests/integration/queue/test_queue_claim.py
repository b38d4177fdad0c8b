"""Claiming: one statement, SKIP LOCKED, disjoint batches, database-clock leases."""

from __future__ import annotations

import asyncio
import uuid

import queue_testkit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs, sql
from support import outcomes


async def test_two_workers_never_claim_the_same_job(
    engine: sa_async.AsyncEngine, db_url: str
) -> None:
    """Eight claimers at once, each on its own connection: disjoint, and every one got work.

    The old runner read the first pending row and then tried to update it, so concurrent
    workers raced for the same row and most came back empty.
    """
    await jobs.enqueue_many(engine, kind="k", count=200)
    engines = [db_engine.create(db_url, pool_size=1) for _ in range(8)]
    try:
        start = asyncio.Event()

        async def claimer(i: int, eng: sa_async.AsyncEngine) -> list[jobs.Lease]:
            await start.wait()
            return await jobs.claim(eng, owner=f"w{i}", limit=25, lease_seconds=30)

        tasks = [asyncio.create_task(claimer(i, e)) for i, e in enumerate(engines)]
        await asyncio.sleep(0)
        start.set()
        batches = await asyncio.gather(*tasks)
    finally:
        for eng in engines:
            await eng.dispose()
    ids = [lease.job_id for batch in batches for lease in batch]
    assert len(ids) == len(set(ids)) == 200
    assert [len(batch) for batch in batches] == [25] * 8


async def test_claim_skips_rows_locked_by_an_in_flight_claim_instead_of_waiting(
    engine: sa_async.AsyncEngine,
) -> None:
    """A claim whose transaction is still open holds its rows; another claim takes the
    next ones at once (SKIP LOCKED) rather than blocking on them or coming back empty."""
    await jobs.enqueue_many(engine, kind="k", count=10)
    async with engine.connect() as holder:
        trans = await holder.begin()
        held = (
            await holder.execute(
                sql.CLAIM, {"owner": "slow", "limit": 4, "lease_seconds": 30, "kinds": None}
            )
        ).all()
        assert len(held) == 4
        async with asyncio.timeout(kit.BOUND_SECONDS):
            others = await jobs.claim(engine, owner="fast", limit=10, lease_seconds=30)
        await trans.commit()
    assert len(others) == 6
    assert {lease.job_id for lease in others}.isdisjoint({r.id for r in held})


async def test_claim_sets_a_fresh_token_a_database_clock_lease_and_counts_the_attempt(
    engine: sa_async.AsyncEngine,
) -> None:
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None, params={"a": 1})
    lease = outcomes.only(await jobs.claim(engine, owner="w1", limit=5, lease_seconds=42.5))
    assert (lease.job_id, lease.owner, lease.kind, lease.attempts) == (job.id, "w1", "k", 1)
    assert lease.params == {"a": 1}
    async with engine.connect() as conn:
        lease_length = (
            await conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM lease_expires_at - updated_at)::float8, "
                    "status, lease_token, started_at IS NOT NULL FROM jobs WHERE id = :id"
                ),
                {"id": job.id},
            )
        ).one()
    assert tuple(lease_length) == (42.5, "running", lease.token, True)
    # Claimed once: nothing else is ready.
    assert await jobs.claim(engine, owner="w2", limit=5, lease_seconds=30) == []


async def test_claim_order_is_priority_then_availability(engine: sa_async.AsyncEngine) -> None:
    low, _ = await jobs.enqueue(engine, kind="k", brand_id=None, priority=5)
    first, _ = await jobs.enqueue(engine, kind="k", brand_id=None, priority=0)
    second, _ = await jobs.enqueue(engine, kind="k", brand_id=None, priority=0)
    claimed = [
        (await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))[0].job_id for _ in range(3)
    ]
    assert claimed == [first.id, second.id, low.id]


async def test_claim_takes_only_the_given_kinds_and_only_ready_jobs(
    engine: sa_async.AsyncEngine,
) -> None:
    wanted, _ = await jobs.enqueue(engine, kind="wanted", brand_id=None)
    await jobs.enqueue(engine, kind="other", brand_id=None)
    later, _ = await jobs.enqueue(engine, kind="wanted", brand_id=None)
    await kit.execute(
        engine,
        "UPDATE jobs SET available_at = now() + interval '1 hour' WHERE id = :id",
        id=later.id,
    )
    leases = await jobs.claim(engine, owner="w", limit=10, lease_seconds=30, kinds=["wanted"])
    assert [lease.job_id for lease in leases] == [wanted.id]


async def test_claim_with_no_free_slots_issues_nothing(engine: sa_async.AsyncEngine) -> None:
    await jobs.enqueue(engine, kind="k", brand_id=uuid.uuid4())
    assert await jobs.claim(engine, owner="w", limit=0, lease_seconds=30) == []
    assert (await jobs.stats(engine))["counts"]["pending"] == 1
