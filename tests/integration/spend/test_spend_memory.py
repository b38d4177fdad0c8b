"""A run's memory: the one its slot counts is the one Apify gives it.

Each run takes ``KAIRO_APIFY_RUN_MEMORY_MBYTES`` of its account's memory budget. A start
without ``memory`` gets the actor's default on Apify (often several GB), so the count
would be fiction and the account's real limit would refuse starts with
``actor-memory-limit-exceeded``. Every start sends the memory its slot counts; a run
that reports another memory (one adopted after a crash, started by an older release)
has its slot corrected to what Apify reports.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import spend_kit
import sqlalchemy as sa
from spend_kit import TOKEN_A, SpendKit
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import platform
from kairo_ingest import config
from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import run_slots, runs, tables
from kairo_ingest.domain import registry
from kairo_ingest.pipeline import budget, compile_job
from kairo_ingest.queue import jobs as queue_jobs

SIX = [
    ("instagram", "posts", "@mem"),
    ("instagram", "reels", "@mem"),
    ("tiktok", "profile_videos", "@mem"),
    ("youtube", "channel_videos", "https://www.youtube.com/@mem"),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/mem/"),
    ("instagram", "posts", "@mem2"),
]


def run_memories(kit: SpendKit) -> list[int]:
    return [int(run.options["memoryMbytes"]) for run in kit.sim.state.runs.values()]


async def test_runs_are_started_with_the_configured_memory_not_the_actors_default(
    kit: SpendKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit.sim.config.default_memory_mbytes = 4096
    monkeypatch.setenv("KAIRO_APIFY_RUN_MEMORY_MBYTES", "2048")
    settings = config.load(budget_poll_seconds=0.05)
    assert settings.apify_run_memory_mbytes == 2048
    result = await kit.compile_as_the_service(settings)
    assert len(result.evidence_status["refreshed"]) == 2, result.evidence_status
    assert run_memories(kit) == [2048, 2048]


async def test_an_account_memory_limit_below_the_actors_default_still_runs_ours(
    kit: SpendKit,
) -> None:
    """Apify's limit of 4 GB fits four of our 1 GB runs, but not one run at the actor's
    default of 4 GB beside another: without ``memory`` the second start is refused."""
    kit.sim.config.default_memory_mbytes = 4096
    kit.sim.config.max_total_memory_mbytes = 4096
    kit.sim.config.time_factor = 0.1  # runs of 0.5 to 2 s: they overlap
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=4, max_memory_mbytes=4096)
    brand, _ = await kit.brand("tenant-a", SIX)
    spent = budget.Budget(kit.engine, memory_mbytes=1024, poll_seconds=0.05)
    result = await compile_job.run(kit.deps(budget=spent), await kit.lease(brand))
    stats = kit.sim.stats()
    assert stats["rejected"] == {}  # no actor-memory-limit-exceeded
    assert len(result.evidence_status["refreshed"]) == 6, result.evidence_status
    assert run_memories(kit) == [1024] * 6
    assert stats["activePeakByToken"][platform.token_tag(TOKEN_A)] >= 2
    assert await kit.count_slots() == 0


async def _account_memory(engine: sa_async.AsyncEngine, account: str) -> int:
    async with engine.connect() as conn:
        used = await run_slots.usage(conn, account)
    return int(used[account]["memory_mbytes"]) if account in used else 0


async def _run_without_memory(
    kit: SpendKit, identifier: str
) -> tuple[queue_jobs.Lease, runs.Run, apify_models.RunInfo]:
    """A job's lease, its intent for its one source, and that source's run started on
    Apify without ``memory`` (as an older release did): the run has the actor's 4 GB."""
    kit.sim.config.default_memory_mbytes = 4096
    kit.sim.config.duration_min_seconds = kit.sim.config.duration_max_seconds = 400  # 4 s
    await kit.account("tenant-a", TOKEN_A)
    brand, (source,) = await kit.brand("tenant-a", [("instagram", "posts", identifier)])
    lease = await kit.lease(brand)
    spec = registry.get_spec(source.platform, source.capability)
    cap = registry.cap_for(source.platform, source.capability, {})
    run_input = spec.build_input(source.identifier, source.settings, cap)
    async with kit.engine.begin() as conn:
        intent = await runs.create_intent(
            conn,
            job_id=lease.job_id,
            source_id=source.id,
            brand_id=brand,
            actor_id=spec.actor_id,
            run_input=run_input,
            item_cap=cap,
            attempt=1,
            account="tenant-a",
        )
        intent = await runs.mark_sent(conn, intent.id)  # as the pipeline does before a send
    tenant = await kit.tenants.resolve("tenant-a")
    started = await tenant.api.start_run(spec.actor_id, run_input)
    assert started.memory_mbytes == 4096
    return lease, intent, started


async def _memory_counted_while_the_job_runs(kit: SpendKit, lease: queue_jobs.Lease) -> set[int]:
    """Run the job with slots counted at 1 GB; every account memory sum seen meanwhile."""
    spent = budget.Budget(kit.engine, memory_mbytes=1024, poll_seconds=0.05)
    job = asyncio.create_task(compile_job.run(kit.deps(budget=spent), lease))
    seen: set[int] = set()
    while not job.done():
        seen.add(await _account_memory(kit.engine, "tenant-a"))
        await asyncio.sleep(0.02)
    result = await job
    assert len(result.evidence_status["refreshed"]) == 1, result.evidence_status
    assert kit.sim.stats()["starts"] == 1  # the run was not started again
    assert await kit.count_slots() == 0
    return seen


async def test_an_adopted_run_with_another_memory_is_counted_at_its_own(kit: SpendKit) -> None:
    """A crash left an intent STARTING after its start reached Apify without ``memory``.
    The job resumes, adopts that run, and its slot counts 4 GB while the run is in
    flight, not the 1 GB asked for."""
    lease, _, started = await _run_without_memory(kit, "@adopted")
    seen = await _memory_counted_while_the_job_runs(kit, lease)
    async with kit.engine.connect() as conn:
        apify_run_id = await conn.scalar(sa.select(tables.apify_runs.c.apify_run_id))
    assert apify_run_id == started.id  # adopted
    assert 4096 in seen  # counted at what Apify gave the run while it was in flight
    assert seen <= {0, 1024, 4096}


async def test_a_run_taken_over_in_flight_is_counted_at_its_own_memory(kit: SpendKit) -> None:
    """A replica died while the run was RUNNING on Apify. The job's next holder takes the
    run over in flight (a forced slot, no new start) and counts it at 4 GB."""
    lease, intent, started = await _run_without_memory(kit, "@taken_over")
    async with kit.engine.begin() as conn:
        await conn.execute(
            sa.update(tables.apify_runs)
            .where(tables.apify_runs.c.id == intent.id)
            .values(
                apify_run_id=started.id,
                dataset_id=started.default_dataset_id,
                status="RUNNING",
                started_at=sa.func.now(),
            )
        )
    seen = await _memory_counted_while_the_job_runs(kit, lease)
    assert 4096 in seen  # counted at what Apify gave the run while it was in flight
    assert seen <= {0, 1024, 4096}


async def test_a_smaller_memory_frees_room_for_the_next_waiter(
    engine: sa_async.AsyncEngine,
) -> None:
    """Resizing a held slot down grants the waiters that now fit (the same rule as a
    release); resizing a row that is not ours (another lease token) changes nothing."""
    async with engine.begin() as conn:
        held = await _slot(conn, granted=True, memory_mbytes=4096)
        waiting = await _slot(conn, granted=False, memory_mbytes=1024)
        assert await run_slots.grant(conn, "acct", max_runs=10, max_memory_mbytes=4096) == []
        assert not await run_slots.resize(conn, held[0], uuid.uuid4(), 1024)  # not our lease
        assert await run_slots.resize(conn, held[0], held[1], 2048)
        assert not await run_slots.resize(conn, held[0], held[1], 2048)  # already so
        assert await run_slots.grant(conn, "acct", max_runs=10, max_memory_mbytes=4096) == [
            waiting[0]
        ]
        assert (await run_slots.usage(conn, "acct"))["acct"]["memory_mbytes"] == 3072


async def _slot(
    conn: sa_async.AsyncConnection, *, granted: bool, memory_mbytes: int
) -> tuple[uuid.UUID, uuid.UUID]:
    """A run with a slot row (held or waiting) under a running job of a brand of its own:
    (run id, lease token)."""
    brand = uuid.uuid4()
    job = await spend_kit.job_row(conn, brand)
    run = await spend_kit.slot_row(conn, brand, job, granted=granted, memory_mbytes=memory_mbytes)
    return run, job[1]
