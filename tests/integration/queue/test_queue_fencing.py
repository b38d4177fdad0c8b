"""Fencing: a worker that lost its lease cannot change the job any more."""

from __future__ import annotations

import asyncio
import random

import pytest
import queue_testkit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.queue import endings, jobs
from support import outcomes

RETRY = {"base_seconds": 1.0, "cap_seconds": 10.0, "snooze_seconds": 5.0}


async def _reclaimed(engine: sa_async.AsyncEngine) -> tuple[jobs.Lease, jobs.Lease]:
    """A job claimed by 'old', whose lease expired and was reaped, then claimed by 'new'."""
    await jobs.enqueue(engine, kind="k", brand_id=None)
    old = outcomes.only(await jobs.claim(engine, owner="old", limit=1, lease_seconds=30))
    await kit.expire_lease(engine, old.job_id)
    assert await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (1, 0)
    new = outcomes.only(await jobs.claim(engine, owner="new", limit=1, lease_seconds=30))
    assert new.job_id == old.job_id
    assert new.token != old.token
    # The reap refunded the first attempt; the claim numbers the second one.
    assert (new.attempts, new.attempt_number) == (1, 2)
    return old, new


async def test_stale_worker_late_complete_leaves_the_rerun_job_untouched(
    engine: sa_async.AsyncEngine,
) -> None:
    old, new = await _reclaimed(engine)
    before = await kit.row(engine, old.job_id)
    rejected = kit.sample("kairo_fenced_writes_rejected_total", operation="complete")

    assert await endings.complete(engine, old, evidence_status={"from": "old"}) is False

    assert await kit.row(engine, old.job_id) == before
    assert before.status == "running"
    assert before.lease_token == new.token
    assert kit.sample("kairo_fenced_writes_rejected_total", operation="complete") == rejected + 1
    # The new owner's complete still lands.
    assert await endings.complete(engine, new, evidence_status={"from": "new"}) is True
    done = await kit.row(engine, new.job_id)
    assert (done.status, done.evidence_status) == ("succeeded", {"from": "new"})


async def test_stale_worker_late_fail_leaves_the_rerun_job_untouched(
    engine: sa_async.AsyncEngine,
) -> None:
    old, new = await _reclaimed(engine)
    before = await kit.row(engine, old.job_id)
    for error in (errors.ApifyTransientError("502"), errors.ApifyAuthError("401")):
        assert await endings.fail(engine, old, error, **RETRY) is None
    assert await endings.release(engine, [old]) == 0
    assert await kit.row(engine, old.job_id) == before
    assert (before.status, before.lease_token, before.attempts) == ("running", new.token, 1)


async def test_stale_worker_heartbeat_reports_the_lease_lost(engine: sa_async.AsyncEngine) -> None:
    old, new = await _reclaimed(engine)
    stale = await jobs.beat(engine, [old], 30)
    assert (stale.extended, stale.busy, stale.lost) == (set(), set(), {old.job_id})
    assert (await jobs.beat(engine, [old], 30)).lost == {old.job_id}
    assert (await jobs.beat(engine, [new], 30)).extended == {new.job_id}


async def test_heartbeat_extends_all_held_leases_in_one_statement_matching_pairs(
    engine: sa_async.AsyncEngine,
) -> None:
    await jobs.enqueue_many(engine, kind="k", count=3)
    a, b, c = await jobs.claim(engine, owner="w", limit=3, lease_seconds=1)
    # A lease with a's id but b's token must not extend anything: pairs are matched as pairs.
    crossed = jobs.Lease(a.job_id, b.token, "w", "k", None, 1, 3, {})
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        beat = await jobs.beat(engine, [crossed, b, c], 60)
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(statements) == 1
    assert beat.extended == {b.job_id, c.job_id}
    async with engine.connect() as conn:
        lengths = dict(
            (
                await conn.execute(
                    sa.text(
                        "SELECT id, extract(epoch FROM lease_expires_at - updated_at)::float8 "
                        "FROM jobs"
                    )
                )
            ).all()
        )
    assert lengths[b.job_id] == lengths[c.job_id] == 60.0
    assert lengths[a.job_id] == 1.0


async def test_heartbeat_extends_a_lease_whose_rows_are_inside_fenced_transactions(
    engine: sa_async.AsyncEngine,
) -> None:
    """The lease holder's own page transactions never stop its lease from being extended
    (the old FOR SHARE fence made the beat report such a job busy, every time)."""
    await jobs.enqueue_many(engine, kind="k", count=2)
    a, b = await jobs.claim(engine, owner="w", limit=2, lease_seconds=30)
    async with engine.connect() as one, engine.connect() as two:
        first = await one.begin()
        second = await two.begin()
        await jobs.fence(one, a)
        await jobs.fence(two, a)
        async with asyncio.timeout(kit.BOUND_SECONDS):
            beat = await jobs.beat(engine, [a, b], 30, statement_timeout_seconds=5)
        await first.commit()
        await second.commit()
    assert (beat.extended, beat.busy, beat.lost) == ({a.job_id, b.job_id}, set(), set())


async def test_heartbeat_skips_a_row_being_taken_over_without_calling_it_lost(
    engine: sa_async.AsyncEngine,
) -> None:
    await jobs.enqueue_many(engine, kind="k", count=2)
    a, b = await jobs.claim(engine, owner="w", limit=2, lease_seconds=30)
    async with engine.connect() as conn:
        trans = await conn.begin()
        await conn.execute(
            sa.text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": a.job_id}
        )
        async with asyncio.timeout(kit.BOUND_SECONDS):
            beat = await jobs.beat(engine, [a, b], 30)
        await trans.commit()
    assert (beat.extended, beat.busy, beat.lost) == ({b.job_id}, {a.job_id}, set())


async def _lock_waiters(engine: sa_async.AsyncEngine) -> int:
    async with engine.connect() as conn:
        waiting = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        ).scalar_one()
    return int(waiting)


@pytest.mark.parametrize("takeover", ["reap", "claim_after_reap", "give_up"])
async def test_no_takeover_commits_while_a_fenced_transaction_is_open(
    engine: sa_async.AsyncEngine, takeover: str
) -> None:
    """The fence still fences: every statement that moves the lease on changes the token
    (a key column), so it waits for the holder's open page transaction; a write made in
    that transaction commits before the takeover, never after it. (A reaper-style UPDATE
    stands in for the reaper here: the real one skips such rows, tested below.)"""
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(await jobs.claim(engine, owner="old", limit=1, lease_seconds=30))
    if takeover != "give_up":
        await kit.expire_lease(engine, job.id)
    async with engine.connect() as conn:
        trans = await conn.begin()
        await jobs.fence(conn, lease)
        if takeover == "give_up":
            moving = asyncio.create_task(endings.give_up(engine, [lease]))
        else:
            moving = asyncio.create_task(
                kit.execute(
                    engine,
                    "UPDATE jobs SET status = 'pending', lease_token = NULL, "
                    "lease_expires_at = NULL WHERE id = :id AND lease_token = :token",
                    id=job.id,
                    token=lease.token,
                )
            )
        waiting = asyncio.create_task(kit.wait_until(lambda: _lock_waiters(engine), every=0.01))
        await asyncio.wait([moving, waiting], return_when=asyncio.FIRST_COMPLETED)
        assert not moving.done(), "the takeover did not wait for the fenced transaction"
        await waiting
        await trans.commit()
    await outcomes.within(kit.BOUND_SECONDS, moving)
    after = await kit.row(engine, job.id)
    assert after.lease_token is None
    if takeover == "give_up":
        assert after.last_error is not None
        assert "given up" in after.last_error
    if takeover == "claim_after_reap":
        new = outcomes.only(await jobs.claim(engine, owner="new", limit=1, lease_seconds=30))
        with pytest.raises(errors.LeaseLostError):
            async with engine.begin() as conn:
                await jobs.fence(conn, lease)
        async with engine.begin() as conn:
            await jobs.fence(conn, new)


async def test_the_reaper_skips_a_job_inside_a_fenced_transaction_instead_of_waiting(
    engine: sa_async.AsyncEngine,
) -> None:
    await jobs.enqueue_many(engine, kind="k", count=2)
    a, b = await jobs.claim(engine, owner="w", limit=2, lease_seconds=30)
    await kit.expire_lease(engine, a.job_id)
    await kit.expire_lease(engine, b.job_id)
    async with engine.connect() as conn:
        trans = await conn.begin()
        await jobs.fence(conn, a)
        async with asyncio.timeout(kit.BOUND_SECONDS):
            assert await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (1, 0)
        await trans.commit()
    assert (await kit.row(engine, a.job_id)).status == "running"
    assert (await kit.row(engine, b.job_id)).status == "pending"


async def test_give_up_hands_the_job_back_ready_now_with_the_attempt_refunded(
    engine: sa_async.AsyncEngine,
) -> None:
    """A give-up is the infrastructure's failure, not the handler's: the attempt comes
    back and the job counts an interruption; its cap fails a job that keeps wedging."""
    await jobs.enqueue_many(engine, kind="k", count=2)
    leases = await jobs.claim(engine, owner="w", limit=2, lease_seconds=30)
    wedged = leases[1]
    await kit.execute(engine, "UPDATE jobs SET interruptions = 9 WHERE id = :id", id=wedged.job_id)
    assert await endings.give_up(engine, leases) == 2
    assert await endings.give_up(engine, leases) == 0  # fenced: the second time changes nothing
    retried = await kit.row(engine, leases[0].job_id)
    exhausted = await kit.row(engine, wedged.job_id)
    assert (retried.status, retried.attempts, retried.interruptions) == ("pending", 0, 1)
    assert retried.last_error_kind == "lease_lost"
    assert await kit.delay_of(engine, retried.id) == 0.0
    assert (exhausted.status, exhausted.last_error_kind) == ("failed", "lease_lost")
    assert exhausted.last_error is not None
    assert "interrupted 10 times" in exhausted.last_error


async def test_fence_raises_lease_lost_inside_the_callers_transaction(
    engine: sa_async.AsyncEngine,
) -> None:
    old, new = await _reclaimed(engine)
    async with engine.begin() as conn:
        await jobs.fence(conn, new)
    with pytest.raises(errors.LeaseLostError):
        async with engine.begin() as conn:
            await jobs.fence(conn, old)


async def test_a_cancel_never_waits_behind_a_fenced_transaction_but_the_lease_holders_end_does(
    engine: sa_async.AsyncEngine,
) -> None:
    """An operator's cancel returns at once while a page transaction holds the fence (it
    only marks a running job). What moves the lease on (here the holder's own end of the
    attempt, which changes the token) still waits for the fenced transaction, so nothing
    it writes can commit after the lease moved on."""
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    async with engine.connect() as conn:
        trans = await conn.begin()
        await jobs.fence(conn, lease)
        marked = await outcomes.within(
            kit.BOUND_SECONDS, jobs.cancel(engine, job.id), "a cancel beside a fenced transaction"
        )
        assert marked is not None
        assert (marked.status, marked.lease_token) == ("running", lease.token)
        assert marked.cancel_requested_at is not None
        ending = asyncio.create_task(endings.stop_cancelled(engine, [lease]))
        done, _ = await asyncio.wait([ending], timeout=0.3)
        assert not done  # blocked behind the fence
        await trans.commit()
    assert await outcomes.within(kit.BOUND_SECONDS, ending) == 1
    assert (await kit.row(engine, job.id)).status == "cancelled"


async def test_release_returns_jobs_ready_now_with_the_attempt_refunded(
    engine: sa_async.AsyncEngine,
) -> None:
    await jobs.enqueue_many(engine, kind="k", count=2)
    leases = await jobs.claim(engine, owner="w", limit=2, lease_seconds=30)
    assert await endings.release(engine, leases) == 2
    for lease in leases:
        job = await kit.row(engine, lease.job_id)
        assert (job.status, job.attempts, job.lease_token, job.lease_expires_at) == (
            "pending",
            0,
            None,
            None,
        )
        assert await kit.delay_of(engine, lease.job_id) == 0.0
    again = await jobs.claim(engine, owner="w2", limit=2, lease_seconds=30)
    assert sorted(lease.attempts for lease in again) == [1, 1]


async def test_fail_uses_the_given_rng_for_its_jitter(engine: sa_async.AsyncEngine) -> None:
    await jobs.enqueue_many(engine, kind="k", count=2)
    a, b = await jobs.claim(engine, owner="w", limit=2, lease_seconds=30)
    for lease in (a, b):
        await endings.fail(engine, lease, RuntimeError("x"), rng=random.Random(1), **RETRY)
    assert await kit.delay_of(engine, a.job_id) == await kit.delay_of(engine, b.job_id)
