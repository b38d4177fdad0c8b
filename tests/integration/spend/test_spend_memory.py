"""A run's memory: the one its slot counts is the one Apify gives it (issue 10).

Each run takes ``KAIRO_APIFY_RUN_MEMORY_MBYTES`` of its account's memory budget. A start
without ``memory`` gets the actor's default on Apify (often several GB), so the count
would be fiction and the account's real limit would refuse starts with
``actor-memory-limit-exceeded``. Every start sends the memory its slot counts.
"""

from __future__ import annotations

import pytest
from spend_kit import TOKEN_A, SpendKit

from kairo_ingest import config
from kairo_ingest.pipeline import budget, compile_job
from kairo_ingest.service import handlers
from kairo_ingest.simulator import platform

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
    deps = handlers.pipeline_deps(settings, kit.engine, kit.apify)  # what `run` builds
    brand, _ = await kit.brand(None)
    try:
        result = await compile_job.run(deps, await kit.lease(brand))
    finally:
        assert deps.tenants is not None
        await deps.tenants.aclose()
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
