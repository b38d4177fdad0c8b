"""Daily caps: reached mid-job, no start happens past it, the job snoozes until the
window resets without spending an attempt, and resumes once the window has moved.

The window is the UTC day on the database's clock; "the window moves" is simulated by
moving the recorded spend back one day (what the clock passing midnight does to it).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from spend_kit import TOKEN_A, SpendKit

from kairo_ingest.db import accounts, tables
from kairo_ingest.domain import evidence
from kairo_ingest.pipeline import budget, compile_job
from kairo_ingest.queue import endings, upkeep
from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes

THREE = [
    ("instagram", "posts", "@capped"),
    ("instagram", "reels", "@capped"),
    ("tiktok", "profile_videos", "@capped"),
]


async def _snooze(kit: SpendKit, lease: queue_jobs.Lease, result: compile_job.Result) -> None:
    assert result.error is not None
    await endings.fail(
        kit.engine,
        lease,
        result.error,
        evidence_status=result.evidence_status,
        base_seconds=1,
        cap_seconds=10,
        snooze_seconds=60,
    )


async def test_a_cap_reached_mid_job_stops_starts_snoozes_to_the_window_and_resumes(
    kit: SpendKit,
) -> None:
    await kit.account("tenant-a", TOKEN_A, daily_cap_usd=0.0001)  # one run is enough
    brand, _ = await kit.brand("tenant-a", THREE)
    deps = kit.deps(source_concurrency=1, budget=budget.Budget(kit.engine, poll_seconds=0.05))

    lease = await kit.lease(brand)
    result = await compile_job.run(deps, lease)
    assert result.verdict is evidence.Verdict.SNOOZE
    assert kit.sim.stats()["starts"] == 1  # no start past the cap
    done = outcomes.only(result.evidence_status["refreshed"])
    blocked = result.evidence_status["failed"]
    assert len(blocked) == 2
    for entry in blocked:
        assert entry["error_kind"] == "budget_exceeded"
        assert "daily cap of $0.0001 for account 'tenant-a'" in entry["error"]
        assert entry["retryable"] is True
    await _snooze(kit, lease, result)
    async with kit.engine.connect() as conn:
        job = (await conn.execute(sa.select(tables.jobs))).one()
        midnight = await conn.scalar(sa.text("SELECT date_trunc('day', now() AT TIME ZONE 'UTC')"))
        now = await conn.scalar(sa.select(sa.func.now()))
    assert (job.status, job.attempts, job.last_error_kind) == ("pending", 0, "budget_exceeded")
    next_day = midnight.replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
    assert job.available_at >= min(next_day, now + dt.timedelta(hours=1)) - dt.timedelta(
        seconds=5
    ), "snoozed until the window resets, not for the usual minute"

    # The window moves on: yesterday's spend no longer counts.
    async with kit.engine.begin() as conn:
        await conn.execute(
            sa.update(tables.apify_runs).values(
                finished_at=tables.apify_runs.c.finished_at - sa.text("interval '1 day'")
            )
        )
        await conn.execute(sa.update(tables.jobs).values(available_at=sa.func.now()))
    assert await upkeep.promote(kit.engine) == 1  # the snooze is over: ready again
    leases = await queue_jobs.claim(kit.engine, owner="test", limit=1, lease_seconds=60)
    again = await compile_job.run(deps, leases[0])
    # One more run fits in the new window; the cap stops the third again.
    assert kit.sim.stats()["starts"] == 2
    assert len(again.evidence_status["refreshed"]) == 2, again.evidence_status
    assert [e["error_kind"] for e in again.evidence_status["failed"]] == ["budget_exceeded"]
    assert done["source_id"] in {e["source_id"] for e in again.evidence_status["refreshed"]}


async def test_a_brands_own_cap_applies_without_an_account_cap(
    kit: SpendKit,
) -> None:
    await kit.account("tenant-a", TOKEN_A)  # no account cap
    brand, _ = await kit.brand("tenant-a", THREE[:1])
    await accounts.set_brand_cap(kit.engine, brand, 0)
    deps = kit.deps(budget=budget.Budget(kit.engine, poll_seconds=0.05))
    result = await compile_job.run(deps, await kit.lease(brand))
    failed = result.evidence_status["failed"]
    assert [entry["error_kind"] for entry in failed] == ["budget_exceeded"], result.evidence_status
    assert f"brand {brand}" in failed[0]["error"]
    assert kit.sim.stats()["starts"] == 0
