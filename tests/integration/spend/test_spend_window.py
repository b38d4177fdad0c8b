"""Spend against a daily cap: what finished in the current window, per account or brand."""

from __future__ import annotations

import decimal
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import costs, sources, tables
from kairo_ingest.pipeline import budget

USD = decimal.Decimal


async def _run(
    engine: sa_async.AsyncEngine,
    source: sources.Source,
    *,
    account: str,
    usd: str,
    finished: str | None,
) -> None:
    """A run of ``source`` on ``account`` that cost ``usd``, finished at the SQL ``finished``."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(tables.apify_runs).values(
                source_connection_id=source.id,
                brand_id=source.brand_id,
                actor_id="apify~instagram-scraper",
                input={},
                apify_run_id=uuid.uuid4().hex,
                status="SUCCEEDED" if finished else "RUNNING",
                finished_at=None if finished is None else sa.text(finished),
                account=account,
                usage_total_usd=USD(usd),
            )
        )


async def test_only_this_windows_finished_runs_of_this_account_or_brand_count(
    engine: sa_async.AsyncEngine,
) -> None:
    """Yesterday's spend never holds today's runs back, another account's never counts,
    and a run in flight counts once it ends."""
    brand = uuid.uuid4()
    source, _ = await sources.add(
        engine, brand_id=brand, platform="instagram", capability="posts", identifier="@acme"
    )
    other, _ = await sources.add(
        engine, brand_id=uuid.uuid4(), platform="instagram", capability="posts", identifier="@b"
    )
    await _run(engine, source, account="a", usd="2.5", finished="now()")
    await _run(engine, source, account="a", usd="100", finished="now() - interval '2 days'")
    await _run(engine, source, account="a", usd="50", finished=None)  # still running
    await _run(engine, source, account="b", usd="1", finished="now()")
    await _run(engine, other, account="a", usd="4", finished="now()")

    async with engine.connect() as conn:

        async def spent(**whose: object) -> USD:
            total, left = await costs.spent_in_window(
                conn,
                window_seconds=budget.DAY_SECONDS,
                **whose,  # type: ignore[arg-type]
            )
            assert 0 < left <= budget.DAY_SECONDS
            return total

        assert await spent(account="a") == USD("6.5")
        assert await spent(account="b") == USD("1")
        assert await spent(brand_id=brand) == USD("3.5")
        assert await spent(account="c") == USD("0")
