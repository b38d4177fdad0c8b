"""A queue that stays cheap as it grows: heartbeats are heap-only (HOT) updates, and a
claim never walks the jobs that wait on a backoff.

Before: the heartbeat changed ``lease_expires_at``, which ``ix_jobs_lease_expiry`` held,
so every beat wrote a new tuple plus an entry in every index (0 of 900 beats were HOT in
a measured drain); and ``ix_jobs_claimable`` held every pending row, so a claim that
did not fill its batch walked every deferred one, on every idle poll. These tests read
the catalog, the transaction's own update counters and the plan, never a time.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import queue_testkit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import endings, jobs, sql, upkeep
from support import outcomes

HEARTBEAT_COLUMNS = ("lease_expires_at", "updated_at")


async def test_no_index_of_jobs_holds_a_column_the_heartbeat_writes(
    engine: sa_async.AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        definitions = (
            await conn.execute(
                sa.text(
                    "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) "
                    "FROM pg_index WHERE indrelid = 'jobs'::regclass"
                )
            )
        ).all()
    assert definitions
    holding = [name for name, text in definitions if any(c in text for c in HEARTBEAT_COLUMNS)]
    assert holding == []


async def _xact_updates(conn: sa_async.AsyncConnection) -> tuple[int, int]:
    row = (
        await conn.execute(
            sa.text(
                "SELECT pg_stat_get_xact_tuples_updated('jobs'::regclass), "
                "pg_stat_get_xact_tuples_hot_updated('jobs'::regclass)"
            )
        )
    ).one()
    return int(row[0]), int(row[1])


async def test_every_heartbeat_is_a_heap_only_update(engine: sa_async.AsyncEngine) -> None:
    await jobs.enqueue_many(engine, kind="k", count=5)
    leases = await jobs.claim(engine, owner="w", limit=5, lease_seconds=30)
    for _ in range(3):
        async with engine.connect() as conn:
            transaction = await conn.begin()
            # The backend's counters not yet reported (they accumulate until a report).
            updated, hot = await _xact_updates(conn)
            beat = await jobs.beat(conn, leases, 30)
            assert beat.extended == {lease.job_id for lease in leases}
            # Every update the beat made was heap-only.
            assert await _xact_updates(conn) == (updated + 5, hot + 5)
            await transaction.commit()


async def _plan_buffers(engine: sa_async.AsyncEngine, index: str) -> tuple[int, int]:
    """(rows, buffers) of the claim's scan of ``index``, in a rolled-back transaction."""
    explain = sa.text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + str(sql.CLAIM.compile()))
    params = {"owner": "plan", "limit": 50, "lease_seconds": 30, "kinds": None}
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(sql.CLAIM_PLANNER)
        document = (await conn.execute(explain, params)).scalar_one()
        await transaction.rollback()
    if isinstance(document, str):
        document = json.loads(document)

    def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
        found = [plan]
        for child in plan.get("Plans", []):
            found += nodes(child)
        return found

    scans = [n for n in nodes(document[0]["Plan"]) if n.get("Index Name") == index]
    assert len(scans) == 1, [n.get("Index Name") for n in nodes(document[0]["Plan"])]
    scan = scans[0]
    return int(scan["Actual Rows"]), int(scan["Shared Hit Blocks"]) + int(
        scan["Shared Read Blocks"]
    )


async def test_a_claim_walks_no_job_that_waits_on_a_backoff(db_url: str) -> None:
    """20,000 jobs wait on a backoff (reaped: the worker's own path to a deferred job), 3
    are ready: a claim of 50 reads the 3 and a page or two, not the 20,000."""
    engine = db_engine.create(db_url, pool_size=2, max_overflow=0)
    try:
        waiting = 20_000
        await jobs.enqueue_many(engine, kind="k", count=waiting)
        for _ in range(waiting // 2000):
            await jobs.claim(engine, owner="gone", limit=2000, lease_seconds=30)
        await kit.execute(engine, "UPDATE jobs SET lease_expires_at = now() - interval '1 s'")
        requeued = 0
        while requeued < waiting:
            done, _ = await endings.reap(
                engine, base_seconds=3600.0, cap_seconds=3600.0, limit=2000
            )
            assert done
            requeued += done
        await jobs.enqueue_many(engine, kind="k", count=3)
        # Autovacuum's steady state: the entries the claims left dead are gone.
        async with db_engine.autocommit(engine) as conn:
            await conn.execute(sa.text("VACUUM ANALYZE jobs"))
        rows, buffers = await _plan_buffers(engine, "ix_jobs_claimable")
        assert rows == 3
        # The 20,000 entries would fill about a hundred leaf pages of the old index.
        assert buffers <= 5
    finally:
        await engine.dispose()


async def test_a_deferred_job_is_promoted_and_announced_once_it_is_due(
    engine: sa_async.AsyncEngine, db_url: str
) -> None:
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    assert await endings.fail(
        engine, lease, RuntimeError("flaky"), base_seconds=3600, cap_seconds=3600, snooze_seconds=1
    )
    assert (await kit.row(engine, job.id)).deferred
    assert await upkeep.promote(engine) == 0  # not due yet
    assert await jobs.claim(engine, owner="w", limit=1, lease_seconds=30) == []
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(db_engine.plain_dsn(db_url))
    try:
        await listener.add_listener(sql.CHANNEL, lambda *args: heard.put_nowait(args[-1]))
        await kit.execute(
            engine,
            "UPDATE jobs SET available_at = now() - interval '1 s' WHERE id = :id",
            id=job.id,
        )
        assert await jobs.claim(engine, owner="w", limit=1, lease_seconds=30) == []
        assert await upkeep.promote(engine) == 1
        assert await outcomes.within(kit.BOUND_SECONDS, heard.get()) == "k"
    finally:
        await listener.close()
    promoted = await kit.row(engine, job.id)
    assert (promoted.status, promoted.deferred) == ("pending", False)
    again = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    assert (again.job_id, again.attempt_number) == (job.id, 2)
