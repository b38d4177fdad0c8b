"""Intent is merged, never dropped: an enqueue that folds into a brand's pending job, and a
running job superseded by its pending follow-up, keep the strongest of both requests
(force_refresh, priority, attempts left) and reset the surviving job's backoff.

Before: a fold merged force_refresh only (a new request's priority and --max-attempts
were dropped and it inherited the pending job's backoff, up to a daily cap's reset), and
a superseded running job's force_refresh, priority and attempts were lost (a forced
refresh could silently become a reuse)."""

from __future__ import annotations

import uuid

import pytest
import queue_testkit as kit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.queue import endings, jobs
from support import outcomes

FIELDS = ("force_refresh", "priority", "attempts", "backoff")


async def _defer(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> None:
    """Make a pending job wait on a long backoff (as a retry or a daily cap's snooze does)."""
    await kit.execute(
        engine,
        "UPDATE jobs SET available_at = now() + interval '6 hours', deferred = true WHERE id = :id",
        id=job_id,
    )


@pytest.mark.parametrize("field", FIELDS)
async def test_an_enqueue_folded_into_a_pending_job_keeps_the_strongest_request(
    engine: sa_async.AsyncEngine, field: str
) -> None:
    brand = uuid.uuid4()
    pending, _ = await jobs.enqueue(
        engine, kind="compile", brand_id=brand, priority=5, max_attempts=3
    )
    await kit.execute(engine, "UPDATE jobs SET attempts = 2 WHERE id = :id", id=pending.id)
    await _defer(engine, pending.id)
    weaker = await jobs.enqueue(
        engine, kind="compile", brand_id=brand, priority=9, max_attempts=1,
        params={"force_refresh": False},
    )  # fmt: skip
    assert weaker == (await kit.row(engine, pending.id), False)
    stronger, created = await jobs.enqueue(
        engine, kind="compile", brand_id=brand, priority=-1, max_attempts=5,
        params={"force_refresh": True},
    )  # fmt: skip
    assert not created
    assert stronger.id == pending.id
    if field == "force_refresh":
        assert stronger.params == {"force_refresh": True}
    elif field == "priority":
        assert stronger.priority == -1
    elif field == "attempts":
        # 1 attempt left before; the new request asked for 5: it gets 5 more.
        assert (stronger.attempts, stronger.max_attempts) == (2, 7)
    else:
        assert not stronger.deferred
        lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
        assert lease.job_id == pending.id


@pytest.mark.parametrize("field", FIELDS)
async def test_a_superseded_running_job_hands_its_request_to_the_follow_up(
    engine: sa_async.AsyncEngine, field: str
) -> None:
    brand = uuid.uuid4()
    await jobs.enqueue(
        engine, kind="compile", brand_id=brand, priority=-3, max_attempts=10,
        params={"force_refresh": True},
    )  # fmt: skip
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    follow, created = await jobs.enqueue(
        engine, kind="compile", brand_id=brand, max_attempts=3, params={"force_refresh": False}
    )
    assert created
    await _defer(engine, follow.id)
    assert await endings.fail(
        engine, lease, errors.ApifyTransientError("502"), base_seconds=0, cap_seconds=0,
        snooze_seconds=0,
    )  # fmt: skip
    assert (await kit.row(engine, lease.job_id)).status == "cancelled"  # superseded
    merged = await kit.row(engine, follow.id)
    assert merged.status == "pending"
    if field == "force_refresh":
        assert merged.params == {"force_refresh": True}
    elif field == "priority":
        assert merged.priority == -3
    elif field == "attempts":
        # The superseded job had 9 attempts left (10, one spent); the follow-up 3.
        assert (merged.attempts, merged.max_attempts) == (0, 9)
    else:
        assert not merged.deferred
        next_lease = outcomes.only(await jobs.claim(engine, owner="w2", limit=1, lease_seconds=30))
        assert next_lease.job_id == follow.id
