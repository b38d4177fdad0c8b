"""Wake-up: NOTIFY on enqueue, LISTEN on a dedicated connection, poll as the fallback."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import psycopg
import queue_testkit as kit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs, sql
from kairo_ingest.worker import context
from support import outcomes

POLL_SECONDS = 30.0  # far longer than any wait below: a pickup can only come from NOTIFY


def _starter() -> tuple[asyncio.Event, context.Handler]:
    started = asyncio.Event()

    async def handler(ctx: context.JobContext) -> context.Outcome:
        started.set()
        return context.Outcome()

    return started, handler


async def test_a_job_enqueued_while_idle_starts_well_before_the_poll_interval(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    started, handler = _starter()
    worker = make_worker({"ping": handler}, listen=True, poll_interval_seconds=POLL_SECONDS)
    async with kit.running(worker):
        assert worker.listening is not None
        await outcomes.within(kit.BOUND_SECONDS, worker.listening.wait())
        await outcomes.within(kit.BOUND_SECONDS, worker.idle.wait())
        claims = worker.claims
        sent = time.monotonic()
        await jobs.enqueue(engine, kind="ping", brand_id=None)
        await outcomes.within(kit.BOUND_SECONDS, started.wait())
        assert time.monotonic() - sent < POLL_SECONDS / 3
        assert worker.claims > claims


async def test_listen_disabled_still_picks_up_jobs_by_polling(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    started, handler = _starter()
    worker = make_worker({"ping": handler}, listen=False, poll_interval_seconds=0.1)
    assert worker.listening is None
    async with kit.running(worker):
        await outcomes.within(kit.BOUND_SECONDS, worker.idle.wait())
        job, _ = await jobs.enqueue(engine, kind="ping", brand_id=None)
        await outcomes.within(kit.BOUND_SECONDS, started.wait())
        await kit.wait_until(lambda: _succeeded(engine, job.id))


async def test_a_burst_of_notifications_is_coalesced_into_few_claims(
    db_url: str, make_worker: kit.WorkerFactory
) -> None:
    """Fifty NOTIFYs from fifty transactions wake an idle worker once (or a few times),
    not fifty times. They are sent from another thread while this event loop is held, so
    they queue up on the LISTEN connection the way a real burst does."""
    _started, handler = _starter()
    worker = make_worker({"ping": handler}, listen=True, poll_interval_seconds=POLL_SECONDS)
    async with kit.running(worker):
        assert worker.listening is not None
        await outcomes.within(kit.BOUND_SECONDS, worker.listening.wait())
        await outcomes.within(kit.BOUND_SECONDS, worker.idle.wait())
        claims = worker.claims
        received = worker.notifications

        def burst() -> None:
            with psycopg.connect(db_engine.plain_dsn(db_url), autocommit=True) as conn:
                for _ in range(50):
                    conn.execute(f"SELECT pg_notify('{sql.CHANNEL}', 'ping')")

        sender = threading.Thread(target=burst)
        sender.start()
        sender.join(kit.BOUND_SECONDS)  # holds this loop on purpose while the burst is sent

        async def all_received() -> bool:
            return worker.notifications >= received + 50

        await kit.wait_until(all_received)

        async def claimed_and_idle_again() -> bool:
            return worker.claims > claims and worker.idle.is_set()

        await kit.wait_until(claimed_and_idle_again)
        assert worker.claims - claims <= 10


async def test_notifications_for_kinds_this_worker_does_not_run_are_ignored(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    started, handler = _starter()
    worker = make_worker({"ping": handler}, listen=True, poll_interval_seconds=POLL_SECONDS)
    async with kit.running(worker):
        assert worker.listening is not None
        await outcomes.within(kit.BOUND_SECONDS, worker.listening.wait())
        await outcomes.within(kit.BOUND_SECONDS, worker.idle.wait())
        claims = worker.claims
        received = worker.notifications
        await jobs.enqueue(engine, kind="someone-else", brand_id=uuid.uuid4())

        async def got_it() -> bool:
            return worker.notifications > received

        await kit.wait_until(got_it)
        assert worker.claims == claims
        assert not started.is_set()


async def _succeeded(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> bool:
    return (await kit.row(engine, job_id)).status == "succeeded"


async def test_a_bulk_enqueue_wakes_an_idle_worker_too(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    _started, handler = _starter()
    worker = make_worker({"ping": handler}, listen=True, poll_interval_seconds=POLL_SECONDS)
    async with kit.running(worker):
        assert worker.listening is not None
        await outcomes.within(kit.BOUND_SECONDS, worker.listening.wait())
        await outcomes.within(kit.BOUND_SECONDS, worker.idle.wait())
        assert await jobs.enqueue_many(engine, kind="ping", count=12) == 12

        async def all_done() -> bool:
            return (await jobs.stats(engine))["counts"]["succeeded"] == 12

        await kit.wait_until(all_done, bound=POLL_SECONDS / 3)
