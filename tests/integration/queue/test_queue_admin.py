"""Enqueue dedupe, operator cancel and retry, listing, stats, pruning and the drain check."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import uuid

import pytest
import queue_testkit as kit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.queue import endings, jobs
from support import outcomes

_RETRY = {"base_seconds": 0.0, "cap_seconds": 0.0, "snooze_seconds": 0.0}


async def test_enqueue_coalesces_only_into_a_pending_job_merging_force_refresh(
    engine: sa_async.AsyncEngine,
) -> None:
    brand = uuid.uuid4()
    first, created = await jobs.enqueue(
        engine, kind="compile", brand_id=brand, params={"force_refresh": False, "x": 1}
    )
    assert created
    again, created_again = await jobs.enqueue(
        engine, kind="compile", brand_id=brand, params={"force_refresh": True}
    )
    assert (again.id, created_again) == (first.id, False)
    assert again.params == {"force_refresh": True, "x": 1}
    # OR: a later enqueue without force_refresh does not take it back.
    third, _ = await jobs.enqueue(engine, kind="compile", brand_id=brand, params={"x": 2})
    assert (third.id, third.params) == (first.id, {"force_refresh": True, "x": 1})
    # Another kind, or another brand, is another job.
    assert (await jobs.enqueue(engine, kind="noop", brand_id=brand))[1]
    assert (await jobs.enqueue(engine, kind="compile", brand_id=uuid.uuid4()))[1]


async def test_enqueue_while_the_brand_runs_creates_one_follow_up_claimed_after_it(
    engine: sa_async.AsyncEngine,
) -> None:
    """The running job already listed its sources: a new request (force_refresh here)
    must become a follow-up job, not be folded into the running one and dropped."""
    brand = uuid.uuid4()
    running, _ = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    lease = outcomes.only(
        await jobs.claim(engine, owner="w", limit=1, lease_seconds=30, kinds=["compile"])
    )
    assert lease.job_id == running.id
    follow, created = await jobs.enqueue(
        engine, kind="compile", brand_id=brand, params={"force_refresh": True}
    )
    assert created
    assert follow.id != running.id
    assert (follow.status, follow.params) == ("pending", {"force_refresh": True})
    again, created_again = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    assert (again.id, created_again) == (follow.id, False)
    # Never two running jobs of one brand: the follow-up waits for the running job.
    assert await jobs.claim(engine, owner="w2", limit=5, lease_seconds=30) == []
    assert await endings.complete(engine, lease)
    next_lease = outcomes.only(await jobs.claim(engine, owner="w2", limit=5, lease_seconds=30))
    assert (next_lease.job_id, next_lease.params) == (follow.id, {"force_refresh": True})
    # A finished job does not count: the next enqueue after it is a new job.
    assert await endings.complete(engine, next_lease)
    fresh, created_fresh = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    assert created_fresh
    assert fresh.id not in {running.id, follow.id}


async def test_the_claim_skips_a_follow_up_but_claims_other_brands_in_the_same_batch(
    engine: sa_async.AsyncEngine,
) -> None:
    brand, other = uuid.uuid4(), uuid.uuid4()
    await jobs.enqueue(engine, kind="compile", brand_id=brand)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    follow, _ = await jobs.enqueue(engine, kind="compile", brand_id=brand, priority=-1)
    second, _ = await jobs.enqueue(engine, kind="compile", brand_id=other)
    brandless = await jobs.enqueue_many(engine, kind="compile", count=2)
    claimed = await jobs.claim(engine, owner="w2", limit=10, lease_seconds=30)
    assert brandless == 2
    assert len(claimed) == 3
    assert follow.id not in {c.job_id for c in claimed}
    assert second.id in {c.job_id for c in claimed}
    assert lease.job_id not in {c.job_id for c in claimed}


@pytest.mark.parametrize("how", ["retry", "snooze", "release", "reap", "give_up"])
async def test_a_job_going_back_to_pending_while_its_follow_up_waits_is_superseded(
    engine: sa_async.AsyncEngine, how: str
) -> None:
    """One pending job per brand: a running job that would go back to pending while its
    follow-up waits ends as cancelled instead (the follow-up does the work), with its
    error kept and a note."""
    brand = uuid.uuid4()
    job, _ = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    follow, _ = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    retry = {"base_seconds": 0.0, "cap_seconds": 0.0, "snooze_seconds": 0.0}
    if how == "retry":
        assert await endings.fail(engine, lease, errors.ApifyTransientError("502"), **retry)
    elif how == "snooze":
        assert await endings.fail(engine, lease, errors.ApifyNotNowError("429"), **retry)
    elif how == "release":
        assert await endings.release(engine, [lease]) == 1
    elif how == "reap":
        await kit.expire_lease(engine, job.id)
        assert await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0) == (1, 0)
    else:
        assert await endings.give_up(engine, [lease]) == 1
    done = await kit.row(engine, job.id)
    assert done.status == "cancelled"
    assert done.finished_at is not None
    assert done.last_error is not None
    assert done.last_error.endswith("superseded by the brand's pending follow-up job")
    assert (await kit.row(engine, follow.id)).status == "pending"
    next_lease = outcomes.only(await jobs.claim(engine, owner="w2", limit=5, lease_seconds=30))
    assert next_lease.job_id == follow.id


async def test_concurrent_enqueues_for_one_brand_create_one_job(
    engine: sa_async.AsyncEngine,
) -> None:
    brand = uuid.uuid4()
    results = await asyncio.gather(
        *(jobs.enqueue(engine, kind="compile", brand_id=brand) for _ in range(10))
    )
    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1


async def test_racing_enqueues_and_claims_from_two_connections_never_run_two_jobs_of_a_brand(
    engine: sa_async.AsyncEngine,
) -> None:
    """Enqueues, claims and completions race over a few brands from three connections.
    Every claim statement succeeds (none trips uq_jobs_running_per_brand), the jobs of a
    brand run one after another (by the database's clock), and every brand ends with
    nothing pending or running."""
    brands = [uuid.uuid4() for _ in range(4)]
    enqueued = asyncio.Event()

    async def enqueuer() -> None:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for round_ in range(15):
                for brand in brands:
                    await jobs.enqueue(
                        conn, kind="compile", brand_id=brand, params={"force_refresh": round_ == 3}
                    )
                await asyncio.sleep(0)
        enqueued.set()

    async def worker(name: str) -> int:
        ran = 0
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            while True:
                leases = await jobs.claim(conn, owner=name, limit=3, lease_seconds=30)
                if not leases:
                    if enqueued.is_set() and not await jobs.has_ready_or_running(conn):
                        return ran
                    await asyncio.sleep(0.002)
                    continue
                await asyncio.sleep(0.01)  # hold the jobs while the enqueuer adds follow-ups
                for lease in leases:
                    assert await endings.complete(conn, lease)
                    ran += 1

    async with asyncio.timeout(kit.BOUND_SECONDS * 4):
        _, ran_a, ran_b = await asyncio.gather(enqueuer(), worker("a"), worker("b"))
    assert ran_a + ran_b >= len(brands) * 2  # follow-ups were created and run
    for brand in brands:
        ran = sorted(
            await jobs.list_jobs(engine, brand_id=brand, limit=1000),
            key=lambda job: job.started_at or job.created_at,
        )
        assert {job.status for job in ran} == {"succeeded"}
        for before, after in itertools.pairwise(ran):
            assert before.finished_at is not None
            assert after.started_at is not None
            assert before.finished_at <= after.started_at, "two jobs of one brand overlapped"


async def test_enqueue_validates_and_prints_as_json(engine: sa_async.AsyncEngine) -> None:
    with pytest.raises(errors.UsageError, match="max_attempts"):
        await jobs.enqueue(engine, kind="k", brand_id=None, max_attempts=0)
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None, params={"force_refresh": True})
    data = json.loads(json.dumps(job.to_json()))
    assert data["id"] == str(job.id)
    assert data["params"] == {"force_refresh": True}
    assert data["status"] == "pending"
    assert dt.datetime.fromisoformat(data["created_at"]) == job.created_at


async def test_cancel_ends_a_pending_job_marks_a_running_one_and_refuses_finished_ones(
    engine: sa_async.AsyncEngine,
) -> None:
    pending, _ = await jobs.enqueue(engine, kind="a", brand_id=None)
    running, _ = await jobs.enqueue(engine, kind="b", brand_id=None)
    lease = outcomes.only(
        await jobs.claim(engine, owner="w", limit=1, lease_seconds=30, kinds=["b"])
    )
    cancelled = await jobs.cancel(engine, pending.id)
    assert cancelled is not None
    assert (cancelled.status, cancelled.lease_token, cancelled.last_error_kind) == (
        "cancelled",
        None,
        "cancelled",
    )
    assert cancelled.finished_at is not None
    # A running job is only marked: its holder stops at its next heartbeat.
    marked = await jobs.cancel(engine, running.id)
    assert marked is not None
    assert (marked.status, marked.lease_token) == ("running", lease.token)
    assert marked.cancel_requested_at is not None
    # Cancelling again is a no-op that returns the job as it is.
    assert (await jobs.cancel(engine, pending.id)) == cancelled
    assert (await jobs.cancel(engine, running.id)) == marked
    # Whatever ends the marked job's attempt (short of success), it ends cancelled.
    assert await endings.fail(engine, lease, errors.ApifyTransientError("502"), **_RETRY)
    ended = await kit.row(engine, running.id)
    assert (ended.status, ended.last_error_kind, ended.lease_token) == (
        "cancelled",
        "cancelled",
        None,
    )
    assert ended.last_error == "502; cancelled by an operator"
    assert await jobs.cancel(engine, uuid.uuid4()) is None
    done, _ = await jobs.enqueue(engine, kind="c", brand_id=None)
    c = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30, kinds=["c"]))
    await endings.complete(engine, c)
    with pytest.raises(errors.UsageError, match="succeeded"):
        await jobs.cancel(engine, done.id)


async def test_an_attempt_that_succeeds_after_a_cancel_ends_its_job_cancelled_with_its_evidence(
    engine: sa_async.AsyncEngine,
) -> None:
    """The run ledger aborts a cancelled job's runs at once, so an attempt that "succeeds"
    after the cancel holds only what those runs had paid for: the operator's cancel wins,
    and the evidence the attempt recorded is kept on the cancelled job."""
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    assert await jobs.cancel(engine, job.id) is not None
    evidence = {"refreshed": [], "reused": [], "skipped": [], "failed": []}
    assert await endings.complete(engine, lease, evidence_status=evidence)
    ended = await kit.row(engine, job.id)
    assert (ended.status, ended.last_error_kind) == ("cancelled", "cancelled")
    assert ended.last_error == "cancelled by an operator after its attempt had done its work"
    assert ended.evidence_status == evidence
    assert ended.finished_at is not None


async def test_the_reaper_ends_a_marked_job_of_a_dead_holder_cancelled(
    engine: sa_async.AsyncEngine,
) -> None:
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    lease = outcomes.only(await jobs.claim(engine, owner="gone", limit=1, lease_seconds=30))
    assert await jobs.cancel(engine, job.id) is not None
    await kit.expire_lease(engine, lease.job_id)
    await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0)
    ended = await kit.row(engine, job.id)
    assert (ended.status, ended.last_error_kind) == ("cancelled", "cancelled")
    assert ended.finished_at is not None


async def test_retry_puts_a_failed_job_back_with_attempts_reset(
    engine: sa_async.AsyncEngine,
) -> None:
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=uuid.uuid4(), max_attempts=1)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    await endings.fail(
        engine, lease, errors.ApifyAuthError("no"), base_seconds=1, cap_seconds=1, snooze_seconds=1
    )
    retried = await jobs.retry(engine, job.id)
    assert retried is not None
    assert (retried.status, retried.attempts, retried.finished_at) == ("pending", 0, None)
    assert await kit.delay_of(engine, job.id) == 0.0
    with pytest.raises(errors.UsageError, match="only failed or cancelled"):
        await jobs.retry(engine, job.id)
    assert await jobs.retry(engine, uuid.uuid4()) is None


async def test_retry_refuses_when_the_brand_has_another_active_job(
    engine: sa_async.AsyncEngine,
) -> None:
    brand = uuid.uuid4()
    old, _ = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    await jobs.cancel(engine, old.id)
    active, _ = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    with pytest.raises(errors.UsageError, match=str(active.id)):
        await jobs.retry(engine, old.id)
    assert (await kit.row(engine, old.id)).status == "cancelled"


async def test_list_get_and_stats(engine: sa_async.AsyncEngine) -> None:
    brand = uuid.uuid4()
    a, _ = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    b, _ = await jobs.enqueue(engine, kind="noop", brand_id=None)
    await jobs.enqueue(engine, kind="noop", brand_id=None)
    await jobs.claim(engine, owner="w", limit=1, lease_seconds=30, kinds=["noop"])
    assert [j.id for j in await jobs.list_jobs(engine, brand_id=brand)] == [a.id]
    assert len(await jobs.list_jobs(engine, status="pending")) == 2
    assert len(await jobs.list_jobs(engine, limit=1)) == 1
    with pytest.raises(errors.UsageError, match="unknown job status"):
        await jobs.list_jobs(engine, status="done")
    assert (await kit.row(engine, b.id)).status == "running"
    assert await jobs.get(engine, uuid.uuid4()) is None
    await kit.execute(
        engine,
        "UPDATE jobs SET available_at = now() - interval '90 seconds' WHERE id = :id",
        id=a.id,
    )
    stats = await jobs.stats(engine)
    assert stats["counts"] == {
        "pending": 2,
        "running": 1,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert stats["ready"] == 2
    assert 90.0 <= stats["oldest_ready_age_seconds"] < 200.0


async def test_stats_of_an_empty_queue(engine: sa_async.AsyncEngine) -> None:
    stats = await jobs.stats(engine)
    assert set(stats["counts"].values()) == {0}
    assert (stats["ready"], stats["oldest_ready_age_seconds"]) == (0, None)


async def test_prune_deletes_finished_jobs_past_retention_in_batches(
    engine: sa_async.AsyncEngine,
) -> None:
    await jobs.enqueue_many(engine, kind="k", count=25)
    leases = await jobs.claim(engine, owner="w", limit=25, lease_seconds=30)
    await endings.complete_many(engine, [(lease, None) for lease in leases[:20]])
    await kit.execute(
        engine,
        "UPDATE jobs SET finished_at = now() - interval '15 days' "
        "WHERE status = 'succeeded' AND id <> :keep",
        keep=leases[0].job_id,
    )
    assert await jobs.prune(engine, older_than=dt.timedelta(days=14), batch_size=7) == 19
    counts = (await jobs.stats(engine))["counts"]
    assert (counts["succeeded"], counts["running"]) == (1, 5)


async def test_has_ready_or_running(engine: sa_async.AsyncEngine) -> None:
    assert not await jobs.has_ready_or_running(engine)
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    assert await jobs.has_ready_or_running(engine)
    assert not await jobs.has_ready_or_running(engine, kinds=["other"])
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    assert await jobs.has_ready_or_running(engine)
    await endings.fail(
        engine,
        lease,
        errors.ApifyNotNowError("429"),
        base_seconds=1,
        cap_seconds=1,
        snooze_seconds=3600,
    )
    # Waiting out a snooze (or a backoff) is neither ready nor running.
    assert (await kit.row(engine, job.id)).status == "pending"
    assert not await jobs.has_ready_or_running(engine)


async def test_depth_samples_the_active_part_of_the_queue(engine: sa_async.AsyncEngine) -> None:
    await jobs.enqueue_many(engine, kind="k", count=3)
    later, _ = await jobs.enqueue(engine, kind="k", brand_id=None)
    await kit.execute(
        engine,
        "UPDATE jobs SET available_at = now() + interval '1 hour' WHERE id = :id",
        id=later.id,
    )
    await jobs.claim(engine, owner="w", limit=1, lease_seconds=30)
    sample = await jobs.depth(engine)
    assert (sample["pending"], sample["ready"], sample["running"]) == (3, 2, 1)
    assert sample["oldest_ready_age_seconds"] >= 0.0
