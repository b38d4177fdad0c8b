"""Database trouble never stops the worker: it logs a classified error and retries."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import queue_testkit as kit
from sqlalchemy.ext import asyncio as sa_async
from structlog import testing as structlog_testing

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs
from kairo_ingest.worker import core
from support import noop, outcomes


async def test_the_worker_recovers_when_its_connections_are_killed(
    engine: sa_async.AsyncEngine, db_url: str, make_worker: kit.WorkerFactory
) -> None:
    """As after a database restart: the LISTEN connection reconnects, pooled connections
    are replaced, and work goes on."""
    worker = make_worker(noop.HANDLERS, listen=True, poll_interval_seconds=0.2)
    async with kit.running(worker) as task:
        assert worker.listening is not None
        await outcomes.within(kit.BOUND_SECONDS, worker.listening.wait())
        admin = await asyncpg.connect(db_engine.plain_dsn(db_url))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert killed >= 1

        async def listening_again() -> bool:
            assert worker.listening is not None
            return worker.listening.is_set() and worker.listen_connects >= 2

        await kit.wait_until(listening_again)
        job, _ = await jobs.enqueue(engine, kind="noop", brand_id=None)

        async def done() -> bool:
            return (await kit.row(engine, job.id)).status == "succeeded"

        await kit.wait_until(done)
        assert not task.done()


async def test_claim_errors_are_logged_classified_and_retried(
    db_url: str,
) -> None:
    """With the database unreachable, the claim loop backs off and keeps going."""
    unreachable = db_engine.create("postgresql://postgres@127.0.0.1:1/nowhere", pool_size=1)
    worker = core.Worker(
        unreachable,
        noop.HANDLERS,
        kit.worker_config(db_url, listen=False, owner=f"t-{uuid.uuid4().hex[:4]}"),
    )
    try:
        with structlog_testing.capture_logs() as logged:
            task = asyncio.create_task(worker.run())

            async def retried() -> bool:
                return worker.claims >= 3

            await kit.wait_until(retried)
            assert not task.done()
            worker.request_stop()
            await outcomes.within(kit.BOUND_SECONDS, task)
    finally:
        await unreachable.dispose()
    errors_logged = [
        e for e in logged if e["event"] == "worker_loop_error" and e["loop"] == "claim"
    ]
    assert errors_logged
    assert errors_logged[0]["error_kind"] == "database"
    assert errors_logged[0]["retryable"] is True
    assert errors_logged[-1]["failures"] >= 2
