"""The attempt history: every way an attempt ends leaves its row, written by the statement
that ended it, with the runs it started and their cost; it goes with its job."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
import queue_testkit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import runs, sources, tables
from kairo_ingest.queue import endings, history, jobs
from support import outcomes

RETRY = {"base_seconds": 0.0, "cap_seconds": 0.0, "snooze_seconds": 0.0}


async def _claimed(engine: sa_async.AsyncEngine, owner: str = "w") -> jobs.Lease:
    await jobs.enqueue(engine, kind="k", brand_id=None)
    return outcomes.only(await jobs.claim(engine, owner=owner, limit=1, lease_seconds=30))


async def _end(engine: sa_async.AsyncEngine, lease: jobs.Lease, how: str) -> None:
    if how == "succeeded":
        assert await endings.complete(engine, lease)
    elif how == "retried":
        assert await endings.fail(engine, lease, errors.ApifyTransientError("502"), **RETRY)
    elif how == "failed":
        assert await endings.fail(engine, lease, errors.ApifyAuthError("401"), **RETRY)
    elif how == "snoozed":
        assert await endings.fail(engine, lease, errors.ApifyNotNowError("429"), **RETRY)
    elif how == "released":
        assert await endings.release(engine, [lease]) == 1
    elif how == "given_up":
        assert await endings.give_up(engine, [lease]) == 1
    elif how == "reaped":
        await kit.expire_lease(engine, lease.job_id)
        assert sum(await endings.reap(engine, base_seconds=0.0, cap_seconds=0.0)) == 1
    elif how == "handed_back":
        assert await endings.hand_back(engine, owner=lease.owner, held=[]) == 1
    else:
        assert await jobs.cancel(engine, lease.job_id) is not None
        assert await endings.stop_cancelled(engine, [lease]) == 1


@pytest.mark.parametrize(
    ("how", "outcome", "job_status", "error_kind", "refunded"),
    [
        ("succeeded", "succeeded", "succeeded", None, False),
        ("retried", "failed", "pending", "apify_transient", False),
        ("failed", "failed", "failed", "auth", False),
        ("snoozed", "snoozed", "pending", "not_now", True),
        ("released", "released", "pending", "cancelled", True),
        ("given_up", "given_up", "pending", "lease_lost", True),
        ("reaped", "reaped", "pending", "lease_lost", True),
        ("handed_back", "handed_back", "pending", "lease_lost", True),
        ("cancelled", "cancelled", "cancelled", "cancelled", False),
    ],
)
async def test_every_end_of_an_attempt_records_it(
    engine: sa_async.AsyncEngine,
    how: str,
    outcome: str,
    job_status: str,
    error_kind: str | None,
    refunded: bool,
) -> None:
    lease = await _claimed(engine, owner="replica-7")
    await _end(engine, lease, how)
    job = await kit.row(engine, lease.job_id)
    attempt = outcomes.only(await history.attempts(engine, job))
    assert (attempt.number, attempt.owner, attempt.outcome, attempt.job_status) == (
        1,
        "replica-7",
        outcome,
        job_status,
    )
    assert attempt.error_kind == error_kind
    assert (attempt.error is None) == (how == "succeeded")
    assert attempt.started_at is not None
    assert attempt.ended_at is not None
    assert attempt.started_at <= attempt.ended_at
    assert job.status == job_status
    assert job.attempts == (0 if refunded else 1)


async def test_attempt_numbers_go_on_across_refunds_and_operator_retries(
    engine: sa_async.AsyncEngine,
) -> None:
    job, _ = await jobs.enqueue(engine, kind="k", brand_id=None, max_attempts=1)
    first = outcomes.only(await jobs.claim(engine, owner="a", limit=1, lease_seconds=30))
    assert await endings.release(engine, [first]) == 1  # refunded
    second = outcomes.only(await jobs.claim(engine, owner="b", limit=1, lease_seconds=30))
    assert (second.attempts, second.attempt_number) == (1, 2)
    assert await endings.fail(engine, second, errors.ApifyAuthError("401"), **RETRY)
    assert await jobs.retry(engine, job.id) is not None  # attempts reset, numbers go on
    third = outcomes.only(await jobs.claim(engine, owner="c", limit=1, lease_seconds=30))
    assert (third.attempts, third.attempt_number) == (1, 3)
    running = await kit.row(engine, job.id)
    found = await history.attempts(engine, running)
    assert [(a.number, a.owner, a.outcome, a.job_status) for a in found] == [
        (1, "a", "released", "pending"),
        (2, "b", "failed", "failed"),
        (3, "c", "running", None),
    ]
    assert found[2].ended_at is None


async def test_each_attempt_lists_the_runs_it_started_and_their_cost(
    engine: sa_async.AsyncEngine,
) -> None:
    brand = uuid.uuid4()
    source, _ = await sources.add(
        engine, brand_id=brand, platform="tiktok", capability="profile_videos", identifier="@h"
    )
    await jobs.enqueue(engine, kind="compile", brand_id=brand)
    costs = [decimal.Decimal("0.0125"), decimal.Decimal("0.5")]
    for cost in costs:
        lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
        async with engine.begin() as conn:
            run = await runs.create_intent(
                conn,
                job_id=lease.job_id,
                source_id=source.id,
                brand_id=brand,
                actor_id="clockworks~tiktok-scraper",
                run_input={"profiles": ["h"]},
                item_cap=6,
                attempt=lease.attempt_number,
                job_attempt=lease.attempt_number,
            )
            await runs.update(conn, run.id, status="FAILED", usage_total_usd=cost)
        assert await endings.fail(
            engine, lease, errors.ApifyRunFailedError(f"run {run.id} ended FAILED"), **RETRY
        )
    job = await kit.row(engine, lease.job_id)
    found = await history.attempts(engine, job)
    assert [len(a.runs) for a in found] == [1, 1]
    assert [a.cost_usd for a in found] == costs
    assert [a.runs[0].status for a in found] == ["FAILED", "FAILED"]
    assert found[1].to_json()["runs"][0]["usage_total_usd"] == 0.5


async def test_the_history_goes_with_its_job(engine: sa_async.AsyncEngine) -> None:
    lease = await _claimed(engine)
    assert await endings.complete(engine, lease)
    await kit.execute(
        engine,
        "UPDATE jobs SET finished_at = now() - interval '30 days' WHERE id = :id",
        id=lease.job_id,
    )
    assert await jobs.prune(engine, older_than=dt.timedelta(days=1)) == 1
    async with engine.connect() as conn:
        left = await conn.scalar(sa.select(sa.func.count()).select_from(tables.job_attempts))
    assert left == 0
