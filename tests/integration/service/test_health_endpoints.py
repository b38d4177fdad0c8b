from __future__ import annotations

import asyncio

import asyncpg
import httpx
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import probe
from kairo_ingest.service import http


async def _get(health: http.Health, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=http.app(health))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        return await client.get(path)


async def test_readyz_is_200_until_draining_then_503_with_a_reason(db_url: str) -> None:
    health = http.Health(db_url, apify="simulator")
    try:
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
    finally:
        await health.close()


async def test_readyz_is_503_when_the_schema_is_behind(
    db_url: str, engine: sa_async.AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
    health = http.Health(db_url, apify="api.apify.com")
    try:
        answer = await _get(health, "/readyz")
    finally:
        await health.close()
    assert answer.status_code == 503
    assert "schema at older" in answer.json()["reason"]
    assert answer.json()["apify"] == "api.apify.com"


async def test_readyz_is_503_when_the_database_is_gone() -> None:
    health = http.Health("postgresql://postgres:pw0rd@127.0.0.1:1/none", apify="simulator")
    answer = await _get(health, "/readyz")
    assert answer.status_code == 503
    assert answer.json()["reason"].startswith("database unavailable")
    assert "pw0rd" not in answer.text
    # An unauthenticated probe names no host, port, user or database.
    for detail in ("127.0.0.1", "postgres", "none"):
        assert detail not in answer.json()["reason"]


async def _probe_connections(url: str) -> list[int]:
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
            "AND datname = current_database()",
            probe.APPLICATION_NAME,
        )
        return [r["pid"] for r in rows]
    finally:
        await conn.close()


async def test_readyz_keeps_one_connection_of_its_own_and_reconnects(db_url: str) -> None:
    """Not the worker's pool: one kept connection, replaced after it is killed."""
    health = http.Health(db_url, apify="simulator")
    try:
        answers = await asyncio.gather(*(_get(health, "/readyz") for _ in range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        pids = await _probe_connections(db_url)
        assert len(pids) == 1, pids

        killer = await asyncpg.connect(db_engine.plain_dsn(db_url))
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", pids[0])
        finally:
            await killer.close()
        # The next check may see the dead connection (503); a later one reconnects.
        statuses = [(await _get(health, "/readyz")).status_code for _ in range(3)]
        assert statuses[-1] == 200, statuses
        new_pids = await _probe_connections(db_url)
        assert len(new_pids) == 1, new_pids
        assert new_pids != pids
    finally:
        await health.close()
    for _ in range(200):  # a closed backend leaves pg_stat_activity shortly after
        if not await _probe_connections(db_url):
            break
        await asyncio.sleep(0.05)
    assert await _probe_connections(db_url) == []


async def test_readyz_answers_while_the_workers_pool_is_exhausted(db_url: str) -> None:
    pool = db_engine.create(db_url, pool_size=1, max_overflow=0)
    health = http.Health(db_url, apify="simulator")
    try:
        async with pool.connect() as held:
            await held.execute(sa.text("SELECT 1"))
            assert (await _get(health, "/readyz")).status_code == 200
    finally:
        await health.close()
        await pool.dispose()


async def test_metrics_serves_the_prometheus_text_format(db_url: str) -> None:
    answer = await _get(http.Health(db_url, apify="simulator"), "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "kairo_jobs_claimed_total" in answer.text


async def test_the_probes_refuse_bodies_and_other_methods_and_are_never_cached() -> None:
    health = http.Health("postgresql://postgres@127.0.0.1:1/none", apify="simulator")
    transport = httpx.ASGITransport(app=http.app(health))
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        answers = {
            "get": await client.get("/livez"),
            "head": await client.head("/livez"),
            "post": await client.post("/livez"),
            "body": await client.request("GET", "/livez", content=b"x" * 10),
            "unknown": await client.get("/nope"),
        }
    assert answers["get"].status_code == 200
    assert answers["head"].status_code == 200
    assert answers["head"].content == b""
    assert answers["post"].status_code == 405
    assert set(answers["post"].headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert answers["body"].status_code == 413
    assert answers["unknown"].status_code == 404
    for name, answer in answers.items():
        assert answer.headers["cache-control"] == "no-store", name
        assert answer.headers["x-content-type-options"] == "nosniff", name
