"""The worker end to end in one process: handlers, lost leases, shutdown and drain."""

from __future__ import annotations

import asyncio
import uuid

import queue_testkit as kit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.queue import history, jobs
from kairo_ingest.worker import context
from support import noop, outcomes


class Blocker:
    """A handler that blocks until released, recording starts and interruptions."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[uuid.UUID] = []
        self.interrupted: list[uuid.UUID] = []
        self.contexts: list[context.JobContext] = []
        self.changed = asyncio.Event()

    async def __call__(self, ctx: context.JobContext) -> context.Outcome:
        self.started.append(ctx.lease.job_id)
        self.contexts.append(ctx)
        self.changed.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.interrupted.append(ctx.lease.job_id)
            self.changed.set()
            raise
        return context.Outcome(evidence_status={"done": True})

    async def wait_started(self, n: int) -> None:
        await self._until(lambda: len(self.started) >= n)

    async def wait_interrupted(self, n: int) -> None:
        await self._until(lambda: len(self.interrupted) >= n)

    async def _until(self, check: object) -> None:
        async with asyncio.timeout(kit.BOUND_SECONDS):
            while not check():  # type: ignore[operator]
                self.changed.clear()
                await self.changed.wait()


async def _status(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> str:
    return (await kit.row(engine, job_id)).status


async def test_cancel_makes_the_owner_stop_at_its_next_heartbeat(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    blocker = Blocker()
    worker = make_worker({"slow": blocker, "noop": noop.noop}, lease_seconds=1.5)
    lost = kit.sample("kairo_leases_lost_total", kind="slow")
    job, _ = await jobs.enqueue(engine, kind="slow", brand_id=uuid.uuid4())
    async with kit.running(worker) as task:
        await blocker.wait_started(1)
        marked = await jobs.cancel(engine, job.id)  # returns at once: the job is marked
        assert marked is not None
        assert marked.status == "running"
        await blocker.wait_interrupted(1)
        assert blocker.contexts[0].lease_lost.is_set()
        await kit.wait_until(lambda: _is(engine, job.id, "cancelled"))
        # The worker carries on with other work.
        other, _ = await jobs.enqueue(engine, kind="noop", brand_id=None)
        await kit.wait_until(lambda: _is(engine, other.id, "succeeded"))
        assert not task.done()
    cancelled = await kit.row(engine, job.id)
    assert (cancelled.last_error_kind, cancelled.lease_token) == ("cancelled", None)
    assert kit.sample("kairo_leases_lost_total", kind="slow") == lost
    attempt = outcomes.only(await history.attempts(engine, cancelled))
    assert (attempt.outcome, attempt.job_status, attempt.owner) == (
        "cancelled",
        "cancelled",
        worker.owner,
    )


async def test_a_reclaimed_job_is_abandoned_by_its_old_owner_without_writes(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    blocker = Blocker()
    worker = make_worker({"slow": blocker}, lease_seconds=1.5, reap_interval_seconds=3600)
    job, _ = await jobs.enqueue(engine, kind="slow", brand_id=None)
    async with kit.running(worker):
        await blocker.wait_started(1)
        # Another worker took the job over (as after an expiry and a reap).
        await kit.execute(
            engine,
            "UPDATE jobs SET lease_token = gen_random_uuid(), lease_owner = 'other' WHERE id = :id",
            id=job.id,
        )
        taken = await kit.row(engine, job.id)
        await blocker.wait_interrupted(1)
        blocker.release.set()
    assert await kit.row(engine, job.id) == taken


async def test_a_handler_exception_or_hang_never_kills_the_loop(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    hang = Blocker()

    async def boom(ctx: context.JobContext) -> context.Outcome:
        raise ValueError("handler bug")

    async def soft_fail(ctx: context.JobContext) -> context.Outcome:
        return context.Outcome(
            evidence_status={"failed": ["s1"]}, error=errors.ApifyInvalidInputError("bad url")
        )

    worker = make_worker(
        {"hang": hang, "boom": boom, "soft": soft_fail, "noop": noop.noop}, concurrency=3
    )
    hung, _ = await jobs.enqueue(engine, kind="hang", brand_id=None)
    crashed, _ = await jobs.enqueue(engine, kind="boom", brand_id=None, max_attempts=2)
    soft, _ = await jobs.enqueue(engine, kind="soft", brand_id=None)
    await jobs.enqueue_many(engine, kind="noop", count=10)
    async with kit.running(worker) as task:
        await hang.wait_started(1)

        async def others_done() -> bool:
            counts = (await jobs.stats(engine))["counts"]
            return counts["succeeded"] == 10 and counts["failed"] == 2

        await kit.wait_until(others_done)
        assert not task.done()
        assert (await kit.row(engine, hung.id)).status == "running"
    boom_row = await kit.row(engine, crashed.id)
    assert (boom_row.attempts, boom_row.last_error_kind) == (2, "internal")
    assert boom_row.last_error == "ValueError: handler bug"
    soft_row = await kit.row(engine, soft.id)
    assert (soft_row.last_error_kind, soft_row.evidence_status) == (
        "invalid_input",
        {"failed": ["s1"]},
    )
    # Stopped with the grace skipped: the hung job went back to pending, attempt refunded.
    released = await kit.row(engine, hung.id)
    assert (released.status, released.attempts) == ("pending", 0)


async def test_stop_during_long_jobs_releases_them_with_the_attempt_restored(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    blocker = Blocker()
    worker = make_worker({"slow": blocker}, concurrency=3, shutdown_grace_seconds=3.0)
    released = kit.sample("kairo_jobs_finished_total", kind="slow", outcome="released")
    await jobs.enqueue_many(engine, kind="slow", count=3)
    task = asyncio.create_task(worker.run())
    await blocker.wait_started(3)
    worker.request_stop()
    assert worker.stopping
    await outcomes.within(kit.BOUND_SECONDS, task)
    assert sorted(blocker.interrupted) == sorted(blocker.started)
    for job in await jobs.list_jobs(engine):
        assert (job.status, job.attempts, job.lease_token, job.lease_expires_at) == (
            "pending",
            0,
            None,
            None,
        )
        assert await kit.delay_of(engine, job.id) == 0.0
    assert kit.sample("kairo_jobs_finished_total", kind="slow", outcome="released") == released + 3


async def test_a_job_that_finishes_within_the_grace_is_completed(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    blocker = Blocker()
    worker = make_worker({"slow": blocker}, concurrency=2, shutdown_grace_seconds=60)
    first, _ = await jobs.enqueue(engine, kind="slow", brand_id=None)
    task = asyncio.create_task(worker.run())
    await blocker.wait_started(1)
    worker.request_stop()
    # No more claiming once stopping.
    late, _ = await jobs.enqueue(engine, kind="slow", brand_id=None)
    blocker.release.set()
    await outcomes.within(kit.BOUND_SECONDS, task)
    done = await kit.row(engine, first.id)
    assert (done.status, done.evidence_status) == ("succeeded", {"done": True})
    assert blocker.interrupted == []
    assert (await kit.row(engine, late.id)).status == "pending"
    assert blocker.started == [first.id]


async def test_a_second_stop_request_skips_the_grace(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    blocker = Blocker()
    worker = make_worker({"slow": blocker}, shutdown_grace_seconds=3600)
    job, _ = await jobs.enqueue(engine, kind="slow", brand_id=None)
    task = asyncio.create_task(worker.run())
    await blocker.wait_started(1)
    worker.request_stop()
    done, _ = await asyncio.wait([task], timeout=0.2)
    assert not done  # in the grace period
    worker.request_stop()
    await outcomes.within(kit.BOUND_SECONDS, task)
    assert blocker.interrupted == [job.id]
    assert (await kit.row(engine, job.id)).status == "pending"


async def test_cancelling_the_run_task_releases_what_it_held(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    blocker = Blocker()
    worker = make_worker({"slow": blocker}, shutdown_grace_seconds=3600)
    job, _ = await jobs.enqueue(engine, kind="slow", brand_id=None)
    task = asyncio.create_task(worker.run())
    await blocker.wait_started(1)
    task.cancel()
    await asyncio.wait([task], timeout=kit.BOUND_SECONDS)
    assert task.cancelled()
    assert (await kit.row(engine, job.id)).status == "pending"


async def test_drain_returns_once_nothing_is_ready_or_running(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    await jobs.enqueue_many(engine, kind="noop", count=60)
    waiting, _ = await jobs.enqueue(engine, kind="noop", brand_id=None)
    await kit.execute(
        engine,
        "UPDATE jobs SET available_at = now() + interval '1 hour' WHERE id = :id",
        id=waiting.id,
    )
    worker = make_worker(noop.HANDLERS, concurrency=8, poll_interval_seconds=5)
    await outcomes.within(kit.BOUND_SECONDS, worker.run(drain=True))
    assert worker.draining
    counts = (await jobs.stats(engine))["counts"]
    assert (counts["succeeded"], counts["pending"], counts["running"]) == (60, 1, 0)


async def test_drain_reports_how_many_jobs_wait_on_a_backoff_and_until_when(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """`run --drain` exits while snoozed jobs wait: it says how many, and until when."""

    async def not_now(ctx: context.JobContext) -> context.Outcome:
        return context.Outcome(error=errors.ApifyNotNowError("429 rate limited"))

    first, _ = await jobs.enqueue(engine, kind="limited", brand_id=uuid.uuid4())
    second, _ = await jobs.enqueue(engine, kind="limited", brand_id=uuid.uuid4())
    await jobs.enqueue_many(engine, kind="noop", count=3)
    worker = make_worker(
        {"limited": not_now, **noop.HANDLERS}, snooze_seconds=3600.0, poll_interval_seconds=5
    )
    await outcomes.within(kit.BOUND_SECONDS, worker.run(drain=True))
    report = worker.drain_report
    assert report is not None
    rows = [await kit.row(engine, first.id), await kit.row(engine, second.id)]
    assert [row.status for row in rows] == ["pending", "pending"]
    assert report.jobs == 2
    assert report.next_at == min(row.available_at for row in rows)
    assert report.describe().startswith("2 jobs wait on a backoff; the first is ready at ")
    assert jobs.Waiting(0, None).describe() == "no job waits on a backoff"


async def _is(engine: sa_async.AsyncEngine, job_id: uuid.UUID, status: str) -> bool:
    return await _status(engine, job_id) == status


async def test_a_handler_whose_fenced_write_finds_the_lease_lost_writes_nothing_more(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    taken: list[jobs.JobRow] = []

    async def handler(ctx: context.JobContext) -> context.Outcome:
        # Someone else holds the job now (as after an expiry and a reclaim) ...
        await kit.execute(
            engine,
            "UPDATE jobs SET lease_token = gen_random_uuid(), lease_owner = 'other' WHERE id = :id",
            id=ctx.lease.job_id,
        )
        taken.append(await kit.row(engine, ctx.lease.job_id))
        # ... so the pipeline's next fenced transaction fails, and the handler gives up.
        async with ctx.engine.begin() as conn:
            await jobs.fence(conn, ctx.lease)
        return context.Outcome()

    lost = kit.sample("kairo_leases_lost_total", kind="fenced")
    worker = make_worker({"fenced": handler}, reap_interval_seconds=3600)
    job, _ = await jobs.enqueue(engine, kind="fenced", brand_id=None)
    async with kit.running(worker):

        async def counted() -> bool:
            return kit.sample("kairo_leases_lost_total", kind="fenced") == lost + 1

        await kit.wait_until(counted)
    assert await kit.row(engine, job.id) == taken[0]


async def test_a_cancelled_error_escaping_a_handler_is_a_failed_attempt(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    async def handler(ctx: context.JobContext) -> context.Outcome:
        raise asyncio.CancelledError

    worker = make_worker({"odd": handler})
    job, _ = await jobs.enqueue(engine, kind="odd", brand_id=None, max_attempts=1)
    async with kit.running(worker) as task:
        await kit.wait_until(lambda: _is(engine, job.id, "failed"))
        assert not task.done()
    row = await kit.row(engine, job.id)
    assert (row.last_error, row.last_error_kind) == (
        "the handler raised CancelledError",
        "internal",
    )


async def test_the_worker_samples_queue_depth_and_oldest_ready_age(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    stuck, _ = await jobs.enqueue(engine, kind="nobody-runs-this", brand_id=None)
    await kit.execute(
        engine,
        "UPDATE jobs SET available_at = now() - interval '90 seconds' WHERE id = :id",
        id=stuck.id,
    )
    worker = make_worker(noop.HANDLERS, stats_interval_seconds=0.05)
    async with kit.running(worker):

        async def sampled() -> bool:
            return (
                kit.sample("kairo_oldest_ready_job_age_seconds") >= 90.0
                and kit.sample("kairo_queue_depth", status="pending") == 1.0
            )

        await kit.wait_until(sampled)


async def test_one_process_runs_up_to_its_concurrency_at_once_claimed_in_one_statement(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """The old runner ran one job per process. Here one process runs `concurrency` jobs
    as coroutines, claimed together, and claims more as slots free up."""
    blocker = Blocker()
    await jobs.enqueue_many(engine, kind="slow", count=5)
    worker = make_worker({"slow": blocker}, concurrency=3, poll_interval_seconds=5)
    async with kit.running(worker):
        await blocker.wait_started(3)
        assert worker.claims == 1
        assert worker.in_flight == 3
        assert (await jobs.stats(engine))["counts"]["running"] == 3
        blocker.release.set()

        async def all_done() -> bool:
            return (await jobs.stats(engine))["counts"]["succeeded"] == 5

        await kit.wait_until(all_done)
    assert len(blocker.started) == 5


async def test_a_result_that_cannot_be_stored_fails_that_job_alone(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    async def handler(ctx: context.JobContext) -> context.Outcome:
        bad = ctx.lease.params.get("bad", False)
        return context.Outcome(evidence_status={"score": float("nan") if bad else 1.0})

    poisoned, _ = await jobs.enqueue(engine, kind="mixed", brand_id=None, params={"bad": True})
    for _ in range(5):
        await jobs.enqueue(engine, kind="mixed", brand_id=None)
    worker = make_worker({"mixed": handler}, concurrency=10)
    async with kit.running(worker):

        async def settled() -> bool:
            counts = (await jobs.stats(engine))["counts"]
            return counts["succeeded"] == 5 and counts["failed"] == 1

        await kit.wait_until(settled)
    row = await kit.row(engine, poisoned.id)
    assert (row.status, row.last_error_kind, row.evidence_status) == ("failed", "internal", None)
    assert "could not be stored" in (row.last_error or "")
