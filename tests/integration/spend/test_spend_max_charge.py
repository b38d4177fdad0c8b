"""Each run's most it may charge, and what that bounds past a daily cap.

A daily cap stops new starts once the day's reported spend reaches it, but runs in flight
finish and count when they end. With ``KAIRO_APIFY_RUN_MAX_CHARGE_USD`` every start sends
``maxTotalChargeUsd``, and a pay-per-event run charges no more than that, so the day's
spend ends at most the cap plus (runs in flight x the max charge).
"""

from __future__ import annotations

import decimal

import pytest
from spend_kit import TOKEN_A, SpendKit

from kairo_apify_sim import platform
from kairo_ingest import config
from kairo_ingest.db import costs
from kairo_ingest.pipeline import budget, compile_job

SIX = [
    ("instagram", "posts", "@charge"),
    ("instagram", "reels", "@charge"),
    ("tiktok", "profile_videos", "@charge"),
    ("youtube", "channel_videos", "https://www.youtube.com/@charge"),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/charge/"),
    ("instagram", "posts", "@charge2"),
]
VARIABLE = "KAIRO_APIFY_RUN_MAX_CHARGE_USD"


def max_charges(kit: SpendKit) -> list[object]:
    return [run.options.get("maxTotalChargeUsd") for run in kit.sim.state.runs.values()]


@pytest.mark.parametrize(("raw", "sent"), [("0.5", 0.5), (None, None)], ids=["set", "unset"])
async def test_runs_carry_the_configured_max_charge_and_none_without_it(
    kit: SpendKit, monkeypatch: pytest.MonkeyPatch, raw: str | None, sent: float | None
) -> None:
    if raw is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, raw)
    result = await kit.compile_as_the_service(config.load(budget_poll_seconds=0.05))
    assert len(result.evidence_status["refreshed"]) == 2, result.evidence_status
    assert max_charges(kit) == [sent, sent]


async def test_a_cap_reached_with_runs_in_flight_is_overshot_by_at_most_their_max_charges(
    kit: SpendKit,
) -> None:
    """Three runs fit the account at once; the first to end passes the cap, so the other
    three sources never start. A run of 6 items costs about $0.015 here; each is cut at
    $0.005, so the day ends within the cap plus 3 x $0.005 (about $0.045 without it)."""
    in_flight, max_charge, cap = 3, decimal.Decimal("0.005"), decimal.Decimal("0.0001")
    kit.sim.config.time_factor = 0.25  # runs of 2.5 to 5 s, a third to a half when capped
    kit.sim.config.duration_min_seconds = 10
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=in_flight, daily_cap_usd=cap)
    brand, _ = await kit.brand("tenant-a", SIX)
    spent = budget.Budget(kit.engine, memory_mbytes=128, poll_seconds=0.05)
    deps = kit.deps(budget=spent, run_max_charge_usd=float(max_charge))
    result = await compile_job.run(deps, await kit.lease(brand))

    stats = kit.sim.stats()
    assert stats["activePeakByToken"][platform.token_tag(TOKEN_A)] == in_flight
    assert stats["starts"] == in_flight  # none past the cap
    assert len(result.evidence_status["refreshed"]) == in_flight, result.evidence_status
    blocked = [entry["error_kind"] for entry in result.evidence_status["failed"]]
    assert blocked == ["budget_exceeded"] * (len(SIX) - in_flight)
    async with kit.engine.connect() as conn:
        day, _ = await costs.spent_in_window(
            conn, window_seconds=budget.DAY_SECONDS, account="tenant-a"
        )
    assert cap < day <= cap + in_flight * max_charge
    runs = list(kit.sim.state.runs.values())
    assert all(run.status == "SUCCEEDED" for run in runs)
    assert all(run.usage_total_usd() <= max_charge for run in runs)
    assert await kit.count_slots() == 0
