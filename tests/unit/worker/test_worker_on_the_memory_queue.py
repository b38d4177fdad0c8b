"""The worker on the in-memory queue (``support.memory_queue``): no database.

The worker is given the queue port; its engine is never connected for a queue call (the
maintenance units that are not the queue's, the sampler and the pruners, fail their rounds
against an address nobody listens on and retry, as through a database outage)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config, errors
from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import statuses
from kairo_ingest.worker import context, core, parameters
from support import memory_queue, noop, outcomes

BOUND_SECONDS = 15.0
NOWHERE = "postgresql://nobody@127.0.0.1:1/unused"  # never connected for a queue call
Status = statuses.JobStatus


@pytest.fixture
async def engine() -> AsyncIterator[sa_async.AsyncEngine]:
    eng = db_engine.create(NOWHERE, pool_size=1)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
def queue() -> memory_queue.MemoryJobQueue:
    return memory_queue.MemoryJobQueue()


@pytest.fixture
def make_worker(
    engine: sa_async.AsyncEngine, queue: memory_queue.MemoryJobQueue
) -> Callable[..., core.Worker]:
    def factory(handlers: dict[str, context.Handler], **overrides: Any) -> core.Worker:
        settings = config.Settings(
            database_url=NOWHERE,
            lease_seconds=30.0,
            poll_interval_seconds=0.05,
            listen_notify=False,
            retry_base_seconds=10.0,
            retry_cap_seconds=10.0,
            reap_interval_seconds=0.05,
            shutdown_grace_seconds=5.0,
        )
        worker_config = parameters.WorkerConfig.from_settings(
            settings,
            owner="unit-worker",
            concurrency=2,
            **{
                "heartbeat_interval_seconds": 0.05,
                "stats_interval_seconds": 3600.0,
                "raw_partition_interval_seconds": 3600.0,
                "forget_workers_interval_seconds": 3600.0,
                "tune_gc": False,
                **overrides,
            },
        )
        return core.Worker(engine, handlers, worker_config, queue=queue)

    return factory


@contextlib.asynccontextmanager
async def running(worker: core.Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run(), name="unit-worker")
    try:
        await outcomes.within(BOUND_SECONDS, worker.ready.wait(), "the worker's start")
        yield task
    finally:
        if not task.done():
            worker.request_stop()
            worker.request_stop()
        await outcomes.within(BOUND_SECONDS, task, "the worker's exit")


def blocking(started: asyncio.Event, cancelled: asyncio.Event) -> context.Handler:
    async def handler(ctx: context.JobContext) -> context.Outcome:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return context.Outcome()

    return handler


async def test_the_worker_claims_runs_and_completes_a_job(
    make_worker: Callable[..., core.Worker], queue: memory_queue.MemoryJobQueue
) -> None:
    job_id = await queue.enqueue(kind=noop.NOOP_KIND)
    worker = make_worker(noop.HANDLERS)
    await outcomes.within(BOUND_SECONDS, worker.run(drain=True), "the drained run")
    job = queue.jobs[job_id]
    assert (job.status, job.attempts, job.claims, job.outcomes) == (
        Status.SUCCEEDED,
        1,
        1,
        ["succeeded"],
    )


async def test_a_failed_attempt_is_retried_after_its_backoff(
    make_worker: Callable[..., core.Worker], queue: memory_queue.MemoryJobQueue
) -> None:
    attempts: list[int] = []

    async def flaky(ctx: context.JobContext) -> context.Outcome:
        attempts.append(ctx.lease.attempts)
        if len(attempts) == 1:
            raise errors.HandlerError("the first attempt fails")
        return context.Outcome(evidence_status={"ok": True})

    job_id = await queue.enqueue(kind="flaky")
    async with running(make_worker({"flaky": flaky})):
        await outcomes.until(
            lambda: queue.jobs[job_id].outcomes == ["failed"], "the failure", BOUND_SECONDS
        )
        job = queue.jobs[job_id]
        assert (job.status, job.deferred) == (Status.PENDING, True)
        backoff = (job.available_at - queue.clock.now()).total_seconds()
        assert 5.0 <= backoff <= 10.0, "base = cap = 10 s with the jitter floor of one half"
        assert attempts == [1], "no second attempt while the backoff runs"
        queue.clock.advance(backoff + 0.001)
        await outcomes.until(
            lambda: job.status == Status.SUCCEEDED, "the retry's success", BOUND_SECONDS
        )
    assert attempts == [1, 2]
    assert job.outcomes == ["failed", "succeeded"]
    assert job.evidence_status == {"ok": True}


async def test_a_lost_lease_cancels_the_handler_and_nothing_is_written_for_it(
    make_worker: Callable[..., core.Worker], queue: memory_queue.MemoryJobQueue
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    job_id = await queue.enqueue(kind="slow")
    async with running(make_worker({"slow": blocking(started, cancelled)})):
        await outcomes.within(BOUND_SECONDS, started.wait(), "the handler's start")
        # Reclaimed behind the worker's back: another worker holds the job now.
        taken_over = uuid.uuid4()
        queue.jobs[job_id].lease_token = taken_over
        queue.jobs[job_id].lease_owner = "another-worker"
        await outcomes.within(BOUND_SECONDS, cancelled.wait(), "the handler's cancel")
    job = queue.jobs[job_id]
    assert (job.status, job.lease_token, job.outcomes) == (Status.RUNNING, taken_over, [])


async def test_shutdown_releases_the_jobs_still_running(
    make_worker: Callable[..., core.Worker], queue: memory_queue.MemoryJobQueue
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    job_id = await queue.enqueue(kind="slow")
    worker = make_worker({"slow": blocking(started, cancelled)}, shutdown_grace_seconds=2.0)
    async with running(worker) as task:
        await outcomes.within(BOUND_SECONDS, started.wait(), "the handler's start")
        worker.request_stop()
        worker.request_stop()  # skip the grace
        await outcomes.within(BOUND_SECONDS, task, "the worker's exit")
    assert cancelled.is_set()
    job = queue.jobs[job_id]
    assert (job.status, job.attempts, job.interruptions, job.outcomes) == (
        Status.PENDING,
        0,
        1,
        ["released"],
    )
    assert "unit-worker" in queue.stopped_owners


async def test_an_operators_cancel_stops_the_handler_and_ends_the_job_cancelled(
    make_worker: Callable[..., core.Worker], queue: memory_queue.MemoryJobQueue
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    job_id = await queue.enqueue(kind="slow")
    async with running(make_worker({"slow": blocking(started, cancelled)})):
        await outcomes.within(BOUND_SECONDS, started.wait(), "the handler's start")
        queue.request_cancel(job_id)
        await outcomes.within(BOUND_SECONDS, cancelled.wait(), "the handler's cancel")
        job = queue.jobs[job_id]
        await outcomes.until(lambda: job.status == Status.CANCELLED, "the job's end", BOUND_SECONDS)
    assert job.outcomes == ["cancelled"]
    assert job.last_error_kind == "cancelled"
