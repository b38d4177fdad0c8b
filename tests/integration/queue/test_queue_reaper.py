"""The reaper: set-based, with backoff, and it never reclaims a live or finished job."""

from __future__ import annotations

import asyncio

import queue_testkit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.queue import endings, jobs
from kairo_ingest.worker import context
from support import outcomes


async def test_reaper_is_one_set_based_statement_with_backoff(engine: sa_async.AsyncEngine) -> None:
    """A job that crashes its worker each time cannot loop hot: requeues wait a backoff,
    doubling with each interruption, with the job retries' jitter floor.

    The old runner looped over stale rows in Python and made them available at once.
    """
    await jobs.enqueue_many(engine, kind="k", count=40)
    leases = await jobs.claim(engine, owner="crashy", limit=40, lease_seconds=30)
    await kit.execute(
        engine,
        "UPDATE jobs SET interruptions = 2, lease_expires_at = now() - interval '1 second'",
    )
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        assert await endings.reap(engine, base_seconds=10.0, cap_seconds=1000.0) == (40, 0)
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(statements) == 1
    delays = [await kit.delay_of(engine, lease.job_id) for lease in leases]
    # The third interruption -> ceiling min(1000, 10 * 2**2) = 40 s, floor half of it.
    assert all(20.0 <= d <= 40.0 for d in delays)
    assert len(set(delays)) > 1  # jittered
    job = await kit.row(engine, leases[0].job_id)
    assert (job.status, job.lease_token, job.last_error_kind) == ("pending", None, "lease_lost")
    # Refunded: a reap is the infrastructure's failure, counted against its own cap.
    assert (job.attempts, job.interruptions, job.deferred) == (0, 3, True)
    assert job.last_error == "lease of crashy expired during attempt 1"
    # Not ready until the promoter finds them due: none is claimed now.
    assert await jobs.claim(engine, owner="w", limit=40, lease_seconds=30) == []


async def test_reaper_fails_a_job_at_its_interruption_cap(engine: sa_async.AsyncEngine) -> None:
    await jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    caps = endings.Caps(max_interruptions=3)
    await kit.execute(engine, "UPDATE jobs SET interruptions = 2 WHERE id = :id", id=lease.job_id)
    await kit.expire_lease(engine, lease.job_id)
    assert await endings.reap(engine, base_seconds=1.0, cap_seconds=1.0, caps=caps) == (0, 1)
    job = await kit.row(engine, lease.job_id)
    assert (job.status, job.last_error_kind, job.interruptions) == ("failed", "lease_lost", 3)
    assert job.finished_at is not None
    assert job.last_error is not None
    assert "interrupted 3 times" in job.last_error
    assert "keeps wedging its worker" in job.last_error


async def test_reaper_leaves_unexpired_leases_alone(engine: sa_async.AsyncEngine) -> None:
    await jobs.enqueue(engine, kind="k", brand_id=None)
    await jobs.claim(engine, owner="w", limit=1, lease_seconds=30)
    assert await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (0, 0)


async def test_reaper_does_not_resurrect_a_job_completed_during_its_scan(
    engine: sa_async.AsyncEngine,
) -> None:
    """The owner completes the job (transaction still open) just as the reaper runs.

    The old reaper read the stale rows first and saved each one afterwards: its save waited
    for the completion to commit and then overwrote it back to pending. Ours skips the
    locked row and re-checks status and expiry on the row version it locks.
    """
    await jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(
        await jobs.claim(engine, owner="slow-but-alive", limit=1, lease_seconds=30)
    )
    await kit.expire_lease(engine, lease.job_id)
    async with engine.connect() as owner:
        trans = await owner.begin()
        assert await endings.complete(owner, lease)
        reap = endings.reap(engine, base_seconds=0.0, cap_seconds=0.0)
        assert await outcomes.within(kit.BOUND_SECONDS, reap, "the reaper's scan") == (0, 0)
        await trans.commit()
    assert await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (0, 0)
    job = await kit.row(engine, lease.job_id)
    assert (job.status, job.attempts) == ("succeeded", 1)


async def test_reaper_rechecks_expiry_when_a_heartbeat_lands_first(
    engine: sa_async.AsyncEngine,
) -> None:
    """A heartbeat that extends an expired lease before the reaper locks the row wins."""
    await jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    await kit.expire_lease(engine, lease.job_id)
    assert (await jobs.beat(engine, [lease], 30)).extended == {lease.job_id}
    assert await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (0, 0)
    assert (await kit.row(engine, lease.job_id)).lease_token == lease.token


async def test_a_long_job_whose_heartbeats_continue_is_never_reclaimed(
    engine: sa_async.AsyncEngine, make_worker: kit.WorkerFactory
) -> None:
    """The old runner released any job locked longer than a threshold, live or not, and
    ran it twice. Here a job outlives its first lease several times over while another
    process's reaper runs constantly; heartbeats keep it ours."""
    started = asyncio.Event()
    finish = asyncio.Event()
    runs = 0

    async def long_job(ctx: context.JobContext) -> context.Outcome:
        nonlocal runs
        runs += 1
        started.set()
        await finish.wait()
        return context.Outcome()

    job, _ = await jobs.enqueue(engine, kind="long", brand_id=None)
    # A lease of 3 s beats every second: a loaded machine (load 10) stalled beats of 1.2 s.
    worker = make_worker({"long": long_job}, lease_seconds=3.0, reap_interval_seconds=3600)
    async with kit.running(worker):
        await outcomes.within(kit.BOUND_SECONDS, started.wait())
        first = await kit.row(engine, job.id)
        assert first.lease_expires_at is not None

        async def outlived_its_first_lease_by_more_than_a_lease() -> bool:
            assert await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (0, 0)
            async with engine.connect() as conn:
                return bool(
                    (
                        await conn.execute(
                            sa.text("SELECT now() > CAST(:at AS timestamptz) + interval '3.5 s'"),
                            {"at": first.lease_expires_at},
                        )
                    ).scalar_one()
                )

        await kit.wait_until(outlived_its_first_lease_by_more_than_a_lease, every=0.05)
        still = await kit.row(engine, job.id)
        assert (still.status, still.lease_token, still.attempts) == (
            "running",
            first.lease_token,
            1,
        )
        assert still.lease_expires_at is not None
        assert still.lease_expires_at > first.lease_expires_at
        finish.set()
        await kit.wait_until(lambda: _status_is(engine, job.id, "succeeded"))
    assert runs == 1


async def _status_is(engine: sa_async.AsyncEngine, job_id: object, status: str) -> bool:
    return (await kit.row(engine, job_id)).status == status  # type: ignore[arg-type]
