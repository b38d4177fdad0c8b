"""Helpers for the queue tests: worker options with short, test-friendly timings, a
running-worker context, a bounded condition wait, and direct row access."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config, metrics
from kairo_ingest.queue import jobs
from kairo_ingest.worker import core, parameters
from support import outcomes

# Every wait in these tests is on an event or a condition; this is only the bound after
# which a test fails instead of hanging.
BOUND_SECONDS = 15.0

WorkerFactory = Callable[..., core.Worker]


def worker_config(db_url: str, **overrides: Any) -> parameters.WorkerConfig:
    """The worker's settings as the service builds them, with short, test-friendly timings
    (keyword overrides win; ``clock`` and ``rng`` are not settings, pass them to Worker)."""
    settings = config.Settings(
        database_url=db_url,
        lease_seconds=30.0,
        poll_interval_seconds=0.1,
        listen_notify=False,
        retry_base_seconds=0.01,
        retry_cap_seconds=0.05,
        snooze_seconds=0.01,
        reap_interval_seconds=0.1,
        finished_job_retention_days=0,
        shutdown_grace_seconds=5.0,
    )
    return parameters.WorkerConfig.from_settings(
        settings,
        owner=overrides.pop("owner", f"test-{uuid.uuid4().hex[:6]}"),
        concurrency=overrides.pop("concurrency", 4),
        dsn_for_listen=overrides.pop("dsn_for_listen", db_url),
        **overrides,
    )


@contextlib.asynccontextmanager
async def running(worker: core.Worker, *, drain: bool = False) -> AsyncIterator[asyncio.Task[None]]:
    """Run the worker in a task; on exit stop it (skipping the grace) and await it."""
    task = asyncio.create_task(worker.run(drain=drain), name="test-worker")
    ready = asyncio.create_task(worker.ready.wait())
    await asyncio.wait([task, ready], timeout=BOUND_SECONDS, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    try:
        yield task
    finally:
        if not task.done():
            worker.request_stop()
            worker.request_stop()
        await outcomes.within(BOUND_SECONDS, task)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, bound: float = BOUND_SECONDS, every: float = 0.02
) -> None:
    """Re-check ``condition`` until it holds; fail (an assertion) after ``bound`` seconds."""

    async def holds() -> None:
        while not await condition():
            await asyncio.sleep(every)

    name = getattr(condition, "__name__", "the condition")
    await outcomes.within(bound, holds(), f"waiting until {name}")


async def row(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> jobs.JobRow:
    job = await jobs.get(engine, job_id)
    assert job is not None
    return job


async def execute(engine: sa_async.AsyncEngine, statement: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text(statement), params)


async def expire_lease(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> None:
    """Make a running job's lease look expired, as if its worker had died."""
    await execute(
        engine,
        "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id",
        id=job_id,
    )


async def delay_of(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> float:
    """Seconds between a job's last write (updated_at = now() of that write) and available_at."""
    async with engine.connect() as conn:
        value = (
            await conn.execute(
                sa.text(
                    "SELECT extract(epoch FROM available_at - updated_at)::float8 "
                    "FROM jobs WHERE id = :id"
                ),
                {"id": job_id},
            )
        ).scalar_one()
    return float(value)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0
