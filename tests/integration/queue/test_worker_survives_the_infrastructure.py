"""No attempt lost to the infrastructure, one task per job, a bounded exit, and the
worker registry: the worker's side of the job history.

Before: a claim whose answer was lost (the connection dropped after its COMMIT, or the
claim was cancelled) left its jobs running with no task and no heartbeat until the
reaper took them back a lease later, each with an attempt spent; a process could run one
job twice (a reclaimed job's old task still unwinding when it was claimed again); and
the exit after SIGTERM took the grace, then up to 10 s of cancellation, then the release
and the final writes, past Kubernetes' default 30 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any

import queue_testkit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

import kairo_ingest
from kairo_ingest import errors
from kairo_ingest.queue import endings, history, jobs, upkeep
from kairo_ingest.worker import context, core
from support import outcomes


class _Recorder:
    """A handler that records each run, and how many runs overlapped at most."""

    def __init__(self) -> None:
        self.runs: list[tuple[uuid.UUID, int]] = []
        self.active = 0
        self.most_at_once = 0

    async def __call__(self, ctx: context.JobContext) -> context.Outcome:
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        try:
            self.runs.append((ctx.lease.job_id, ctx.lease.attempt_number))
            return context.Outcome(evidence_status={"ok": True})
        finally:
            self.active -= 1


async def _succeeded(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> bool:
    return (await kit.row(engine, job_id)).status == "succeeded"


async def test_a_claim_whose_answer_is_lost_is_handed_back_at_once(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """The claim commits, then its connection drops before the answer arrives: the worker
    hands the job back at once (attempt refunded) instead of leaving it to the reaper."""
    recorder = _Recorder()
    worker = make_worker({"k": recorder}, lease_seconds=60.0, reap_interval_seconds=3600.0)
    claim = worker._claim_conn.claim
    lost: list[Any] = []

    async def claim_then_lose_the_answer(**kwargs: Any) -> list[jobs.Lease]:
        leases = await claim(**kwargs)
        if leases and not lost:
            lost.extend(leases)
            raise errors.DatabaseUnavailableError("connection failed: the answer was lost")
        return leases

    worker._claim_conn.claim = claim_then_lose_the_answer  # type: ignore[method-assign]
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    async with kit.running(worker):
        await kit.wait_until(lambda: _succeeded(engine, job.id))
    assert lost
    done = await kit.row(engine, job.id)
    assert done.attempts == 1
    found = await history.attempts(engine, done)
    assert [(a.number, a.outcome, a.job_status) for a in found] == [
        (1, "handed_back", "pending"),
        (2, "succeeded", "succeeded"),
    ]
    assert recorder.runs == [(job.id, 2)]


async def test_each_heartbeat_hands_back_what_the_worker_owns_but_does_not_hold(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """A row left running under this worker's name with a token it never heard of (a claim
    answer lost in a way the claim loop did not see) is handed back by the next beat."""
    recorder = _Recorder()
    worker = make_worker(
        {"k": recorder},
        lease_seconds=60.0,
        heartbeat_interval_seconds=0.2,
        heartbeat_timeout_seconds=0.15,
        reap_interval_seconds=3600.0,
    )
    async with kit.running(worker):
        async with engine.begin() as conn:
            job_id = (
                await conn.execute(
                    sa.text(
                        "INSERT INTO jobs (kind, status, attempts, claims, lease_owner, "
                        "lease_token, lease_expires_at, started_at, attempt_started_at) "
                        "VALUES ('k', 'running', 1, 1, :owner, gen_random_uuid(), "
                        "now() + interval '60 seconds', now(), now()) RETURNING id"
                    ),
                    {"owner": worker.owner},
                )
            ).scalar_one()
        await kit.wait_until(lambda: _succeeded(engine, job_id))
    done = await kit.row(engine, job_id)
    assert done.attempts == 1
    assert [a.outcome for a in await history.attempts(engine, done)] == [
        "handed_back",
        "succeeded",
    ]
    assert worker.lease_keeper.handed_back == 1


class _Sticky:
    """A handler whose first attempt, once cancelled, unwinds until ``cleanup`` is set
    (as a shielded budget slot's release would); it counts calls and how many ran at once."""

    def __init__(self) -> None:
        self.cleanup = asyncio.Event()
        self.first_started = asyncio.Event()
        self.calls = 0
        self.active = 0
        self.most_at_once = 0

    async def __call__(self, ctx: context.JobContext) -> context.Outcome:
        self.calls += 1
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        try:
            if self.calls == 1:
                self.first_started.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    await asyncio.shield(self.cleanup.wait())
                    raise
            return context.Outcome()
        finally:
            self.active -= 1

    def worker(self, make_worker: kit.WorkerFactory) -> core.Worker:
        """A worker that beats every 0.2 s and never reaps on its own."""
        return make_worker(
            {"sticky": self},
            lease_seconds=60.0,
            heartbeat_interval_seconds=0.2,
            heartbeat_timeout_seconds=0.15,
            reap_interval_seconds=3600.0,
        )


async def test_a_job_claimed_again_waits_for_its_previous_task_in_this_process(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """The job's lease is reclaimed while its handler's shielded clean-up still runs; the
    same process claims it again: the new attempt starts only once the old task is gone."""
    sticky = _Sticky()
    in_flight = kit.sample("kairo_jobs_in_flight")
    worker = sticky.worker(make_worker)
    job, _ = await jobs.enqueue(engine, kind="sticky", brand_id=None)
    async with kit.running(worker):
        await outcomes.within(kit.BOUND_SECONDS, sticky.first_started.wait())

        async def reaped() -> bool:
            # The live heartbeat may renew the expired lease (or hold its row locked) before
            # the reaper looks: expire it again until the reaper takes it.
            await kit.expire_lease(engine, job.id)
            return await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (1, 0)

        await kit.wait_until(reaped)

        async def claimed_again() -> bool:
            return (await kit.row(engine, job.id)).claims == 2

        await kit.wait_until(claimed_again)
        beats = worker.lease_keeper.beats

        async def three_more_beats() -> bool:
            return worker.lease_keeper.beats >= beats + 3

        await kit.wait_until(three_more_beats)  # the new lease is held and beaten meanwhile
        assert sticky.calls == 1  # the second attempt waits for the first one's task
        sticky.cleanup.set()
        await kit.wait_until(lambda: _succeeded(engine, job.id))
    assert (sticky.calls, sticky.most_at_once) == (2, 1)
    assert kit.sample("kairo_jobs_in_flight") == in_flight


async def test_an_attempt_lost_while_it_waits_leaves_the_next_one_waiting_for_the_first(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """The first attempt's task still unwinds; the second claim waits for it and is itself
    reclaimed while it waits (its task ends at once); the third claim must still wait for
    the first task, not only for the second."""
    sticky = _Sticky()
    worker = sticky.worker(make_worker)
    job, _ = await jobs.enqueue(engine, kind="sticky", brand_id=None)
    async with kit.running(worker):
        await outcomes.within(kit.BOUND_SECONDS, sticky.first_started.wait())
        for claims in (2, 3):

            async def reaped() -> bool:
                # A live heartbeat may renew the expired lease first: expire it again.
                await kit.expire_lease(engine, job.id)
                return await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (1, 0)

            await kit.wait_until(reaped)

            async def claimed_again(claims: int = claims) -> bool:
                return (await kit.row(engine, job.id)).claims == claims

            await kit.wait_until(claimed_again)
        beats = worker.lease_keeper.beats

        async def three_more_beats() -> bool:
            return worker.lease_keeper.beats >= beats + 3

        await kit.wait_until(three_more_beats)
        assert sticky.calls == 1  # the third attempt still waits for the first one's task
        sticky.cleanup.set()
        await kit.wait_until(lambda: _succeeded(engine, job.id))
    assert (sticky.calls, sticky.most_at_once) == (2, 1)


async def test_the_whole_exit_fits_the_shutdown_budget_even_when_a_handler_ignores_cancel(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """A handler that ignores cancellation cannot stretch the exit past the budget: the
    worker cancels, releases its job (attempt refunded, an interruption) and returns."""
    started = asyncio.Event()
    let_go = asyncio.Event()

    async def stubborn(ctx: context.JobContext) -> context.Outcome:
        started.set()
        while not let_go.is_set():
            try:
                await let_go.wait()
            except asyncio.CancelledError:
                continue  # ignores every cancellation
        return context.Outcome()

    job, _ = await jobs.enqueue(engine, kind="stubborn", brand_id=None)
    worker = make_worker(
        {"stubborn": stubborn}, shutdown_grace_seconds=2.0, cancel_timeout_seconds=10.0
    )
    task = asyncio.create_task(worker.run())
    try:
        await outcomes.within(kit.BOUND_SECONDS, started.wait())
        stopped_at = time.monotonic()
        worker.request_stop()
        # Generous: the budget is 2 s; the old exit took the grace, then 10 s of
        # cancellation, then the release and the final writes.
        await outcomes.within(8.0, task)
        assert time.monotonic() - stopped_at < 8.0
    finally:
        let_go.set()
        if not task.done():
            await outcomes.within(kit.BOUND_SECONDS, task)
    released = await kit.row(engine, job.id)
    assert (released.status, released.attempts, released.interruptions) == ("pending", 0, 1)


async def test_a_job_released_at_every_shutdown_fails_at_its_interruption_cap(
    engine: sa_async.AsyncEngine,
) -> None:
    """Release refunds the attempt, but not for ever: a job that wedges every worker it
    lands on (so it is released at each exit) fails with that reason."""
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    caps = endings.Caps(max_interruptions=3)
    for _ in range(3):
        lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
        assert await endings.release(engine, [lease], caps=caps) == 1
    failed = await kit.row(engine, job.id)
    assert (failed.status, failed.attempts, failed.interruptions) == ("failed", 0, 3)
    assert failed.last_error is not None
    assert "keeps wedging its worker" in failed.last_error


async def test_a_job_snoozed_without_end_fails_at_its_snooze_cap(
    engine: sa_async.AsyncEngine,
) -> None:
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    caps = endings.Caps(max_snoozes=2)
    for expected in ("pending", "failed"):
        await kit.execute(engine, "UPDATE jobs SET deferred = false, available_at = now()")
        lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
        await endings.fail(
            engine, lease, errors.ApifyNotNowError("limit"), base_seconds=0.0,
            cap_seconds=0.0, snooze_seconds=1.0, caps=caps,
        )  # fmt: skip
        assert (await kit.row(engine, job.id)).status == expected
    failed = await kit.row(engine, job.id)
    assert failed.last_error == "limit; snoozed 2 times, the cap"


async def test_each_worker_keeps_its_row_in_the_registry(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    started = asyncio.Event()
    finish = asyncio.Event()

    async def hold(ctx: context.JobContext) -> context.Outcome:
        started.set()
        await finish.wait()
        return context.Outcome()

    worker = make_worker(
        {"hold": hold}, heartbeat_interval_seconds=0.2, heartbeat_timeout_seconds=0.15
    )
    await jobs.enqueue(engine, kind="hold", brand_id=None)
    async with kit.running(worker):
        await outcomes.within(kit.BOUND_SECONDS, started.wait())

        async def registered() -> bool:
            rows = await upkeep.workers(engine)
            return bool(rows) and rows[0].held_jobs == 1

        await kit.wait_until(registered)
        row = outcomes.only(await upkeep.workers(engine))
        assert (row.owner, row.version, row.concurrency) == (
            worker.owner,
            kairo_ingest.__version__,
            worker.config.concurrency,
        )
        assert row.alive
        assert row.stopped_at is None
        finish.set()
    row = outcomes.only(await upkeep.workers(engine))
    assert row.stopped_at is not None
    assert not row.alive
    assert await upkeep.forget_workers(engine, older_than=dt.timedelta(0)) == 1
    assert await upkeep.workers(engine) == []
