from __future__ import annotations

import httpx
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.service import http


async def _get(health: http.Health, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=http.app(health))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        return await client.get(path)


async def test_readyz_is_200_until_draining_then_503_with_a_reason(
    engine: sa_async.AsyncEngine,
) -> None:
    health = http.Health(engine, apify="simulator")
    assert (await _get(health, "/readyz")).status_code == 200
    assert (await _get(health, "/livez")).status_code == 200
    health.draining = True
    answer = await _get(health, "/readyz")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "unavailable",
        "reason": "shutting down",
        "apify": "simulator",
    }
    assert (await _get(health, "/livez")).status_code == 200


async def test_readyz_is_503_when_the_schema_is_behind(engine: sa_async.AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
    answer = await _get(http.Health(engine, apify="simulator"), "/readyz")
    assert answer.status_code == 503
    assert "schema at older" in answer.json()["reason"]


async def test_readyz_is_503_when_the_database_is_gone() -> None:
    dead = db_engine.create("postgresql://postgres@127.0.0.1:1/none")
    try:
        answer = await _get(http.Health(dead, apify="simulator"), "/readyz")
    finally:
        await dead.dispose()
    assert answer.status_code == 503
    assert answer.json()["reason"].startswith("database unavailable")


async def test_metrics_serves_the_prometheus_text_format(engine: sa_async.AsyncEngine) -> None:
    answer = await _get(http.Health(engine, apify="simulator"), "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "kairo_jobs_claimed_total" in answer.text
