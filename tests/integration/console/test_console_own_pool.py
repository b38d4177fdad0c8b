"""The console reads through a pool of its own (read-only transactions, a server-side
statement timeout) and never waits on the engine of the worker it runs beside."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import sqlalchemy as sa
from console_seed import CONSOLE_TOKEN, Seeded, settings
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.console import access
from kairo_ingest.console import server as console_server
from kairo_ingest.db import engine as db_engine

BEARER = {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
PAGES = ("/", "/jobs", "/jobs?status=failed", "/runs", "/brands", "/spend", "/audit")


async def test_pages_answer_while_the_workers_pool_is_exhausted(seeded: Seeded) -> None:
    """Twenty clients at once, while the worker holds every connection of its pool."""
    worker = db_engine.create(seeded.url, pool_size=1, max_overflow=0, pool_timeout_seconds=2)
    app = console_server.app(settings(seeded.url, console_token=CONSOLE_TOKEN), worker)
    try:
        async with worker.connect() as held:  # the worker's only connection, busy
            await held.execute(sa.text("SELECT 1"))
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8081"
            ) as http:

                async def refresh(i: int) -> int:
                    response = await http.get(PAGES[i % len(PAGES)], headers=BEARER)
                    return response.status_code

                codes = await asyncio.wait_for(
                    asyncio.gather(*(refresh(i) for i in range(20))), timeout=60
                )
        assert codes == [200] * 20
        async with worker.connect() as conn:
            console = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'kairo-ingest-console'"
                )
            )
        assert 1 <= console <= access.READ_POOL_SIZE
    finally:
        await app.aclose()
        await worker.dispose()


async def test_reads_are_read_only_with_a_server_side_statement_timeout(
    engine: sa_async.AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = access.ReadPool.beside(engine)
    try:
        async with reads.read() as conn:
            assert await conn.scalar(sa.text("SHOW transaction_read_only")) == "on"
            assert await conn.scalar(sa.text("SHOW statement_timeout")) == "5s"
        with pytest.raises(errors.DatabaseError):
            async with reads.read() as conn:
                await conn.execute(sa.text("INSERT INTO jobs (status) VALUES ('pending')"))
        monkeypatch.setattr(access, "STATEMENT_TIMEOUT_SECONDS", 0.2)
        with pytest.raises(errors.DatabaseError):
            async with reads.read() as conn:
                await conn.execute(sa.text("SELECT pg_sleep(30)"))
        async with engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT count(*) FROM jobs")) == 0
    finally:
        await reads.dispose()


async def test_the_write_path_is_one_connection_with_a_lock_timeout(
    engine: sa_async.AsyncEngine,
) -> None:
    writes = access.WritePath.beside(engine)
    try:
        async with writes.turn() as write_engine:
            assert write_engine.pool.size() == access.WRITE_POOL_SIZE == 1
            async with write_engine.connect() as conn:
                assert await conn.scalar(sa.text("SHOW lock_timeout")) == "3s"
                assert await conn.scalar(sa.text("SHOW statement_timeout")) == "10s"
            assert writes.lock.locked()  # one console action at a time
    finally:
        await writes.dispose()


async def test_the_cache_shares_one_computation_between_concurrent_requests() -> None:
    now = [0.0]
    cache = access.Cache(ttl_seconds=5, clock=lambda: now[0])
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return calls

    assert await asyncio.gather(*(cache.get("k", compute) for _ in range(20))) == [1] * 20
    now[0] = 4.9
    assert await cache.get("k", compute) == 1
    now[0] = 5.0
    assert await cache.get("k", compute) == 2
    assert calls == 2


async def test_a_slow_panel_is_served_stale_while_one_task_recomputes_it() -> None:
    now = [0.0]
    cache = access.Cache(ttl_seconds=60, serve_stale=True, clock=lambda: now[0])
    release = asyncio.Event()
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()
        return calls

    assert await cache.get("spend", compute) == 1  # the first time waits for it
    now[0] = 61.0
    answers = await asyncio.gather(*(cache.get("spend", compute) for _ in range(10)))
    assert answers == [1] * 10  # the old value at once, and one refresh started
    assert calls == 2
    release.set()
    for _ in range(100):
        await asyncio.sleep(0)
        if await cache.get("spend", compute) == 2:
            break
    assert await cache.get("spend", compute) == 2
    assert calls == 2
    await cache.aclose()
