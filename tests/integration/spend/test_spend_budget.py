"""One run budget per account across replicas, kept in PostgreSQL.

Slots are rows tied to run intents; they count only while their job holds the same
lease; grants are serialized per account, fair across brands, and a freed slot wakes
its next holder by NOTIFY.
"""

from __future__ import annotations

import asyncio
import uuid

import spend_kit
import sqlalchemy as sa
from spend_kit import TOKEN_A, SpendKit
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import platform
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import run_slots, tables
from kairo_ingest.pipeline import budget, compile_job
from kairo_ingest.worker import listener as worker_listener
from support import outcomes

SIX = [
    ("instagram", "posts", "@one"),
    ("instagram", "reels", "@one"),
    ("tiktok", "profile_videos", "@one"),
    ("youtube", "channel_videos", "https://www.youtube.com/@one"),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/one/"),
    ("instagram", "posts", "@two"),
]


async def test_no_more_runs_in_flight_than_the_accounts_budget(kit: SpendKit) -> None:
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=2)
    brand, _ = await kit.brand("tenant-a", SIX)
    spent = budget.Budget(kit.engine, poll_seconds=0.05)
    result = await compile_job.run(kit.deps(budget=spent), await kit.lease(brand))
    assert len(result.evidence_status["refreshed"]) == 6, result.evidence_status
    stats = kit.sim.stats()
    assert stats["activePeakByToken"][platform.token_tag(TOKEN_A)] == 2
    assert stats["rejected"] == {}
    assert await kit.count_slots() == 0  # every slot released


async def test_grants_go_to_the_brand_holding_fewest_slots_then_the_oldest(
    engine: sa_async.AsyncEngine,
) -> None:
    big, small = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        big_job = await spend_kit.job_row(conn, big)
        small_job = await spend_kit.job_row(conn, small, running=False)
        # Another running job (one per brand).
        small_job = await spend_kit.job_row(conn, uuid.uuid4())
        await spend_kit.slot_row(conn, big, big_job, granted=True)
        big_waits = [await spend_kit.slot_row(conn, big, big_job) for _ in range(3)]  # oldest first
        small_wait = await spend_kit.slot_row(conn, uuid.uuid4(), small_job)
        granted = await run_slots.grant(conn, "acct", max_runs=3, max_memory_mbytes=10**6)
    # Two free slots: the brand with none goes first although it asked last, then the
    # oldest of the big brand's waiters.
    assert granted == [small_wait, big_waits[0]]


async def test_a_slot_whose_job_lost_its_lease_is_free_and_swept(
    engine: sa_async.AsyncEngine,
) -> None:
    brand = uuid.uuid4()
    async with engine.begin() as conn:
        dead_job = await spend_kit.job_row(conn, brand)
        await spend_kit.slot_row(conn, brand, dead_job, granted=True)
        # The holder was killed; the reaper took its job back (a new lease, or none).
        await conn.execute(
            sa.update(tables.jobs)
            .where(tables.jobs.c.id == dead_job[0])
            .values(status="pending", lease_token=None, lease_expires_at=None)
        )
        live = await spend_kit.job_row(conn, uuid.uuid4())
        waiting = await spend_kit.slot_row(conn, uuid.uuid4(), live)
        assert (await run_slots.usage(conn, "acct"))["acct"] == {
            "runs": 0,
            "memory_mbytes": 0,
            "waiting": 1,
            "dead": 1,
        }
        assert await run_slots.sweep(conn, "acct") == 1
        assert await run_slots.grant(conn, "acct", max_runs=1, max_memory_mbytes=10**6) == [waiting]


async def test_a_waiter_is_woken_by_notify_not_by_its_poll(kit: SpendKit, db_url: str) -> None:
    """The poll is an hour long: only the NOTIFY of the released slot can wake the waiter."""
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=1)
    brand, _ = await kit.brand("tenant-a")
    spent = budget.Budget(kit.engine, poll_seconds=3600)
    listener = worker_listener.Listener(
        db_engine.plain_dsn(db_url), spent.on_notify, channel=run_slots.CHANNEL
    )
    stop = asyncio.Event()
    listening = asyncio.create_task(listener.run(stop))
    try:
        await outcomes.within(30, listener.listening.wait())
        async with asyncio.timeout(120):
            result = await compile_job.run(kit.deps(budget=spent), await kit.lease(brand))
    finally:
        stop.set()
        await outcomes.within(10, listening)
    assert len(result.evidence_status["refreshed"]) == 2, result.evidence_status
    assert spent.wakeups >= 1
    assert kit.sim.stats()["activePeakByToken"][platform.token_tag(TOKEN_A)] == 1
