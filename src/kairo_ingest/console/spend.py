"""Spend in the console: the overview's panel (runs in flight against each account's budget,
today's spend against its cap) and the spend page (30 UTC days per account with the daily
caps, and per account, brand and actor for the window or one day).

The figures are ``kairo-ingest costs``'s: :func:`kairo_ingest.db.costs.breakdowns` sums
the same per-run rows as :func:`kairo_ingest.db.costs.report`, and today's spend against
a cap is :func:`kairo_ingest.db.costs.spent_in_window`, as the budget reads it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.console import queries
from kairo_ingest.db import accounts, costs, run_slots

DAY_SECONDS = 86_400
# The spend page reads every run of 30 days (seconds at millions of runs): it is computed
# at most once a minute, in the background once it has been computed, with room to finish.
PAGE_CACHE_SECONDS = 60.0
PAGE_STATEMENT_TIMEOUT_SECONDS = 60.0
CHART_DAYS = 30
TOP = 20


@dataclasses.dataclass(frozen=True, slots=True)
class DefaultLimits:
    """The implicit ``default`` account's limits (KAIRO_APIFY_ACCOUNT_*)."""

    max_concurrent_runs: int
    max_memory_mbytes: int
    daily_cap_usd: float | None


async def limits(
    conn: sa_async.AsyncConnection, default: DefaultLimits
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        accounts.DEFAULT: {
            "max_concurrent_runs": default.max_concurrent_runs,
            "max_memory_mbytes": default.max_memory_mbytes,
            "daily_cap_usd": default.daily_cap_usd,
        }
    }
    for row in await queries.account_limits(conn):
        out[row["name"]] = {
            "max_concurrent_runs": row["max_concurrent_runs"] or default.max_concurrent_runs,
            "max_memory_mbytes": row["max_memory_mbytes"] or default.max_memory_mbytes,
            "daily_cap_usd": None if row["daily_cap_usd"] is None else float(row["daily_cap_usd"]),
        }
    return out


async def panel(conn: sa_async.AsyncConnection, default: DefaultLimits) -> list[dict[str, Any]]:
    out = []
    usage = await run_slots.usage(conn)
    for name, limit in (await limits(conn, default)).items():
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


TODAY = sa.text("SELECT (now() AT TIME ZONE 'UTC')::date AS today, now() AS now")


async def page(
    conn: sa_async.AsyncConnection, default: DefaultLimits, *, day: dt.date | None
) -> dict[str, Any]:
    """Everything the spend page shows; ``day`` narrows the breakdowns to one UTC day."""
    clock = (await conn.execute(TODAY)).one()
    today: dt.date = clock.today
    since = today - dt.timedelta(days=CHART_DAYS - 1)
    window = await costs.breakdowns(conn, since=since)
    per_day = window[("day", "account")]
    if day is None:
        by = {name: window[(name,)] for name in ("account", "brand_id", "actor_id")}
    else:
        one = await costs.breakdowns(conn, since=day, until=day)
        by = {name: one[(name,)] for name in ("account", "brand_id", "actor_id")}
    caps = {name: limit["daily_cap_usd"] for name, limit in (await limits(conn, default)).items()}
    return {
        "computed_at": clock.now.isoformat(),
        "today": today.isoformat(),
        "since": since.isoformat(),
        "day": day.isoformat() if day is not None else None,
        "days": per_day,
        "daily_caps_usd": caps,
        "total_usd": round(sum(r["usage_total_usd"] for r in by["account"]), 6),
        "accounts": _top(by["account"], limit=None),
        "brands": _top(by["brand_id"], limit=TOP),
        "actors": _top(by["actor_id"], limit=TOP),
    }


def _top(rows: list[dict[str, Any]], *, limit: int | None) -> list[dict[str, Any]]:
    ordered = sorted(rows, key=lambda r: (-r["usage_total_usd"], -r["runs"]))
    return ordered if limit is None else ordered[:limit]


def chart_series(data: dict[str, Any]) -> tuple[list[str], dict[str, list[float]]]:
    """Day labels and, per account, its spend on each of the chart's days."""
    start = dt.date.fromisoformat(data["since"])
    days = [start + dt.timedelta(days=i) for i in range(CHART_DAYS)]
    index = {d.isoformat(): i for i, d in enumerate(days)}
    per_account: dict[str, list[float]] = {}
    for row in data["days"]:
        values = per_account.setdefault(row["account"], [0.0] * CHART_DAYS)
        i = index.get(row["day"])
        if i is not None:
            values[i] += row["usage_total_usd"]
    return [d.strftime("%m-%d") for d in days], per_account
