"""The overview's spend panel: each account's runs in flight against its budget, and
today's spend against its daily cap (issue 10)."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import accounts, budget, costs

DAY_SECONDS = 86_400


@dataclasses.dataclass(frozen=True, slots=True)
class DefaultLimits:
    """The implicit ``default`` account's limits (KAIRO_APIFY_ACCOUNT_*)."""

    max_concurrent_runs: int
    max_memory_mbytes: int
    daily_cap_usd: float | None


async def panel(engine: sa_async.AsyncEngine, default: DefaultLimits) -> list[dict[str, Any]]:
    rows = await accounts.list_accounts(engine)
    limits: dict[str, dict[str, Any]] = {
        accounts.DEFAULT: {
            "max_concurrent_runs": default.max_concurrent_runs,
            "max_memory_mbytes": default.max_memory_mbytes,
            "daily_cap_usd": default.daily_cap_usd,
        }
    }
    for row in rows:
        limits[row.name] = {
            "max_concurrent_runs": row.max_concurrent_runs or default.max_concurrent_runs,
            "max_memory_mbytes": row.max_memory_mbytes or default.max_memory_mbytes,
            "daily_cap_usd": None if row.daily_cap_usd is None else float(row.daily_cap_usd),
        }
    out = []
    async with engine.connect() as conn:
        usage = await budget.usage(conn)
        for name, limit in limits.items():
            spent, _ = await costs.spent_in_window(conn, window_seconds=DAY_SECONDS, account=name)
            used = usage.get(name, {})
            out.append(
                {
                    "account": name,
                    "runs": used.get("runs", 0),
                    "waiting": used.get("waiting", 0),
                    "memory_mbytes": used.get("memory_mbytes", 0),
                    "spent_today_usd": float(spent),
                    **limit,
                }
            )
    return out
