"""Leases under load: the holder's own fenced transactions, a busy pool and a
stalled heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
import uuid

import queue_testkit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs
from kairo_ingest.worker import context
from support import outcomes


@dataclasses.dataclass
class ManualClock:
    """A monotonic clock the test moves; it starts at the real one's reading."""

    now: float = dataclasses.field(default_factory=time.monotonic)

    def monotonic(self) -> float:
        return self.now


async def _expiry(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> dt.datetime:
    expiry = (await kit.row(engine, job_id)).lease_expires_at
    assert expiry is not None
    return expiry


async def test_a_job_inside_long_fenced_transactions_keeps_its_lease(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """Seven sources, each inside a fenced page transaction that stays open: the
    heartbeat still extends the lease, and the job succeeds on attempt 1."""
    inside = asyncio.Event()
    finish = asyncio.Event()

    async def ingest(ctx: context.JobContext) -> context.Outcome:
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(7):
                conn = await stack.enter_async_context(ctx.engine.connect())
                await stack.enter_async_context(conn.begin())
                await jobs.fence(conn, ctx.lease)
            inside.set()
            await finish.wait()
        return context.Outcome(evidence_status={"sources": 7})

    job, _ = await jobs.enqueue(engine, kind="ingest", brand_id=uuid.uuid4())
    worker = make_worker(
        {"ingest": ingest}, heartbeat_interval_seconds=0.2, heartbeat_timeout_seconds=0.15
    )
    async with kit.running(worker):
        await outcomes.within(kit.BOUND_SECONDS, inside.wait())
        first = await _expiry(engine, job.id)

        async def extended() -> bool:
            return bool(await _expiry(engine, job.id) > first)

        await kit.wait_until(extended)
        finish.set()
        await kit.wait_until(lambda: _status_is(engine, job.id, "succeeded"))
    done = await kit.row(engine, job.id)
    assert (done.attempts, done.evidence_status) == (1, {"sources": 7})


async def test_handlers_that_exhaust_the_pool_do_not_starve_the_heartbeat(
    engine: sa_async.AsyncEngine, db_url: str, make_worker: kit.WorkerFactory
) -> None:
    """The heartbeat has a connection of its own: handlers holding every pooled connection
    (and waiting for more) do not stop their leases from being extended."""
    finish = asyncio.Event()

    async def hog(ctx: context.JobContext) -> context.Outcome:
        async with ctx.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            await finish.wait()
        return context.Outcome()

    await jobs.enqueue_many(engine, kind="hog", count=20)
    worker = make_worker(
        {"hog": hog},
        concurrency=20,
        heartbeat_interval_seconds=0.2,
        heartbeat_timeout_seconds=0.15,
    )
    observer = db_engine.create(db_url, pool_size=1, max_overflow=0)
    try:
        async with kit.running(worker):

            async def all_running() -> bool:
                return worker.in_flight == 20

            await kit.wait_until(all_running)
            running = await jobs.list_jobs(observer, status="running")
            latest = max(job.lease_expires_at for job in running if job.lease_expires_at)

            async def every_lease_extended() -> bool:
                rows = await jobs.list_jobs(observer, status="running")
                return len(rows) == 20 and all(
                    job.lease_expires_at is not None and job.lease_expires_at > latest
                    for job in rows
                )

            await kit.wait_until(every_lease_extended)
            finish.set()
    finally:
        await observer.dispose()


async def test_a_stalled_heartbeat_gives_the_job_up_before_its_database_lease_ends(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """Beats that cannot extend (the row is locked by someone else) make the worker give
    the job up once the last extension is older than lease - (interval + timeout): the
    handler is cancelled while the database lease still holds, and the job is handed back
    at once instead of waiting for expiry and the reaper."""
    clock = ManualClock()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def wait_forever(ctx: context.JobContext) -> context.Outcome:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return context.Outcome()

    job, _ = await jobs.enqueue(engine, kind="slow", brand_id=None)
    worker = make_worker(
        {"slow": wait_forever},
        lease_seconds=30.0,
        heartbeat_interval_seconds=0.2,
        heartbeat_timeout_seconds=0.15,
        reap_interval_seconds=3600.0,
        clock=clock,
    )
    keeper = worker.lease_keeper
    assert keeper.give_up_after_seconds == 30.0 - (0.2 + 0.15)
    async with kit.running(worker):
        await outcomes.within(kit.BOUND_SECONDS, started.wait(), "waiting for the job to start")
        async with engine.connect() as blocker:
            trans = await blocker.begin()
            # Another transaction holds the row: every beat reports it busy, none extends.
            await blocker.execute(
                sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": job.id}
            )
            clock.now += keeper.give_up_after_seconds - 0.5
            await _beats(keeper, 3)
            assert not cancelled.is_set()
            clock.now += 0.51  # past the give-up point, still well inside the lease
            await outcomes.within(kit.BOUND_SECONDS, cancelled.wait(), "waiting for the give-up")
            row = await kit.row(engine, job.id)
            # Given up while the database lease still held (by the database's clock).
            async with engine.connect() as conn:
                db_now = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
            assert row.status == "running"
            assert row.lease_expires_at is not None
            assert db_now < row.lease_expires_at
            await trans.commit()
        # Handed back at once (fenced), not after expiry, the attempt refunded.
        await kit.wait_until(lambda: _status_is(engine, job.id, "pending"))
    back = await kit.row(engine, job.id)
    assert (back.attempts, back.interruptions, back.last_error_kind) == (0, 1, "lease_lost")
    assert back.last_error is not None
    assert "given up" in back.last_error


async def _beats(keeper: object, count: int) -> None:
    target = keeper.beats + count  # type: ignore[attr-defined]

    async def enough() -> bool:
        return bool(keeper.beats >= target)  # type: ignore[attr-defined]

    await kit.wait_until(enough)


async def _status_is(engine: sa_async.AsyncEngine, job_id: uuid.UUID, status: str) -> bool:
    return (await kit.row(engine, job_id)).status == status
