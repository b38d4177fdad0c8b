"""Enqueue dedupe, operator cancel and retry, listing, stats, pruning and the drain check."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid

import pytest
import queue_testkit as kit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.queue import jobs


async def test_enqueue_dedupes_per_brand(engine: sa_async.AsyncEngine) -> None:
    brand = uuid.uuid4()
    first, created = await jobs.enqueue(engine, kind="compile", brand_id=brand, params={"x": 1})
    assert created
    again, created_again = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    assert (again.id, created_again) == (first.id, False)
    # Another kind, or another brand, is another job.
    assert (await jobs.enqueue(engine, kind="noop", brand_id=brand))[1]
    assert (await jobs.enqueue(engine, kind="compile", brand_id=uuid.uuid4()))[1]
    # Running still counts as active; a finished job does not.
    [lease] = await jobs.claim(engine, owner="w", limit=1, lease_seconds=30, kinds=["compile"])
    assert lease.job_id == first.id
    assert (await jobs.enqueue(engine, kind="compile", brand_id=brand))[0].id == first.id
    assert await jobs.complete(engine, lease)
    fresh, created_fresh = await jobs.enqueue(engine, kind="compile", brand_id=brand)
    assert created_fresh
    assert fresh.id != first.id


async def test_concurrent_enqueues_for_one_brand_create_one_job(
    engine: sa_async.AsyncEngine,
) -> None:
    brand = uuid.uuid4()
    results = await asyncio.gather(
        *(jobs.enqueue(engine, kind="compile", brand_id=brand) for _ in range(10))
    )
    assert sum(created for _, created in results) == 1
    assert len({job.id for job, _ in results}) == 1


async def test_enqueue_validates_and_prints_as_json(engine: sa_async.AsyncEngine) -> None:
    with pytest.raises(errors.UsageError, match="max_attempts"):
        await jobs.enqueue(engine, kind="k", brand_id=None, max_attempts=0)
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None, params={"force_refresh": True})
    data = json.loads(json.dumps(job.to_json()))
    assert data["id"] == str(job.id)
    assert data["params"] == {"force_refresh": True}
    assert data["status"] == "pending"
    assert dt.datetime.fromisoformat(data["created_at"]) == job.created_at


async def test_cancel_pending_and_running_jobs_and_refuse_finished_ones(
    engine: sa_async.AsyncEngine,
) -> None:
    pending, _ = await jobs.enqueue(engine, kind="a", brand_id=None)
    running, _ = await jobs.enqueue(engine, kind="b", brand_id=None)
    [lease] = await jobs.claim(engine, owner="w", limit=1, lease_seconds=30, kinds=["b"])
    for job in (pending, running):
        cancelled = await jobs.cancel(engine, job.id)
        assert cancelled is not None
        assert (cancelled.status, cancelled.lease_token, cancelled.last_error_kind) == (
            "cancelled",
            None,
            "cancelled",
        )
        # Cancelling again is a no-op that returns the job.
        assert (await jobs.cancel(engine, job.id)) == cancelled
    # The owner of the running job has lost it.
    assert await jobs.complete(engine, lease) is False
    assert await jobs.cancel(engine, uuid.uuid4()) is None
    done, _ = await jobs.enqueue(engine, kind="c", brand_id=None)
    [c] = await jobs.claim(engine, owner="w", limit=1, lease_seconds=30, kinds=["c"])
    await jobs.complete(engine, c)
    with pytest.raises(errors.UsageError, match="succeeded"):
        await jobs.cancel(engine, done.id)


async def test_retry_puts_a_failed_job_back_with_attempts_reset(
    engine: sa_async.AsyncEngine,
) -> None:
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=uuid.uuid4(), max_attempts=1)
    [lease] = await jobs.claim(engine, owner="w", limit=1, lease_seconds=30)
    await jobs.fail(
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
    await jobs.complete_many(engine, [(lease, None) for lease in leases[:20]])
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
    [lease] = await jobs.claim(engine, owner="w", limit=1, lease_seconds=30)
    assert await jobs.has_ready_or_running(engine)
    await jobs.fail(
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
