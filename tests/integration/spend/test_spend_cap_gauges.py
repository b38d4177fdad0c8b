"""The gauges the spend alert compares: an account's daily cap and its spend in the cap's
window, as the last check before a start saw them."""

from __future__ import annotations

from spend_kit import TOKEN_A, SpendKit

from kairo_ingest import metrics
from kairo_ingest.pipeline import budget, compile_job

ONE = [("instagram", "posts", "@gauged"), ("tiktok", "profile_videos", "@gauged")]


def _value(name: str, account: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"account": account})


async def test_a_cap_check_sets_the_accounts_cap_and_spend_gauges(kit: SpendKit) -> None:
    await kit.account("tenant-gauged", TOKEN_A, daily_cap_usd=5)
    brand, _ = await kit.brand("tenant-gauged", ONE)
    deps = kit.deps(source_concurrency=1, budget=budget.Budget(kit.engine, poll_seconds=0.05))

    await compile_job.run(deps, await kit.lease(brand))

    assert _value("kairo_apify_daily_cap_usd", "tenant-gauged") == 5
    # Checked before the second start, after the first run's cost was recorded.
    spent = _value("kairo_apify_daily_spent_usd", "tenant-gauged")
    assert spent is not None
    assert 0 < spent < 5
