from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pipeline_kit import QUICK_RUNS, TOKEN, Kit
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import server as sim_server
from kairo_ingest.apify import client as apify_client


@pytest.fixture
async def kit(engine: sa_async.AsyncEngine) -> AsyncIterator[Kit]:
    async with (
        sim_server.running(dict(QUICK_RUNS)) as sim,
        apify_client.ApifyClient(
            sim.base_url, TOKEN, backoff_base_seconds=0.01, backoff_cap_seconds=0.05
        ) as api,
    ):
        yield Kit(engine, sim, api)
