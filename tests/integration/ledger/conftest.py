from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from ledger_kit import DEFAULT_TOKEN, KEY, LONG_RUNS, LedgerKit, client
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import server as sim_server
from kairo_ingest import secretbox
from kairo_ingest.pipeline import tenants


@pytest.fixture
async def kit(engine: sa_async.AsyncEngine) -> AsyncIterator[LedgerKit]:
    box = secretbox.SecretBox(KEY)
    async with (
        sim_server.running(dict(LONG_RUNS)) as sim,
        client(sim.base_url, DEFAULT_TOKEN) as api,
    ):
        pool = tenants.Tenants(
            engine,
            default_api=api,
            default_limits=tenants.Limits(max_concurrent_runs=32, max_memory_mbytes=32_768),
            box=box,
            factory=lambda token: client(sim.base_url, token),
        )
        try:
            yield LedgerKit(engine, sim, api, box, pool)
        finally:
            await pool.aclose()
