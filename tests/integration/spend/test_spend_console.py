"""The console overview's spend panel: runs in flight against each account's budget and
today's spend against its cap (it replaced a placeholder)."""

from __future__ import annotations

import sqlalchemy as sa
from spend_kit import TOKEN_A, SpendKit

from kairo_ingest.console import spend
from kairo_ingest.db import tables
from kairo_ingest.pipeline import budget, compile_job


async def test_panel_shows_each_accounts_runs_budget_and_spend_today(kit: SpendKit) -> None:
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=4, daily_cap_usd=5)
    brand, _ = await kit.brand("tenant-a")
    await compile_job.run(kit.deps(budget=budget.Budget(kit.engine)), await kit.lease(brand))
    async with kit.engine.connect() as conn:
        cost = await conn.scalar(sa.select(sa.func.sum(tables.apify_runs.c.usage_total_usd)))
    default = spend.DefaultLimits(32, 32_768, None)
    async with kit.engine.connect() as conn:
        rows = {r["account"]: r for r in await spend.panel(conn, default)}
    assert rows["default"] == {
        "account": "default",
        "runs": 0,
        "waiting": 0,
        "memory_mbytes": 0,
        "spent_today_usd": 0.0,
        "max_concurrent_runs": 32,
        "max_memory_mbytes": 32_768,
        "daily_cap_usd": None,
    }
    tenant = rows["tenant-a"]
    assert (tenant["max_concurrent_runs"], tenant["daily_cap_usd"], tenant["runs"]) == (4, 5.0, 0)
    assert tenant["spent_today_usd"] == float(cost)
