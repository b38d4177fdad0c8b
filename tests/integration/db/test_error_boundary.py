"""The engine-level error boundary, against a real PostgreSQL.

Every statement through an engine from ``db.engine.create`` raises the error tree's
database errors, classified by SQLSTATE, with no SQL text in the message.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

import tcp_proxy_kit
from kairo_ingest import errors
from kairo_ingest.db import engine as db_engine
from support import outcomes


async def _fresh_table(engine: sa_async.AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE boundary_t (id int PRIMARY KEY, v int)"))
        await conn.execute(sa.text("INSERT INTO boundary_t VALUES (1, 0), (2, 0)"))


async def _in_transaction(engine: sa_async.AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(sa.text(statement))


async def test_unique_violation_is_a_constraint_error_without_sql(
    engine: sa_async.AsyncEngine,
) -> None:
    await _fresh_table(engine)
    with pytest.raises(errors.DatabaseConstraintError) as caught:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO boundary_t VALUES (1, 42)"))
    assert caught.value.sqlstate == "23505"
    assert caught.value.constraint_name == "boundary_t_pkey"
    assert not caught.value.retryable
    assert "[SQL" not in caught.value.message
    assert "INSERT" not in caught.value.message


async def test_deadlock_is_retryable(engine: sa_async.AsyncEngine) -> None:
    await _fresh_table(engine)
    first_locked, second_locked = asyncio.Event(), asyncio.Event()

    async def crosswise(
        mine: int, theirs: int, locked: asyncio.Event, other: asyncio.Event
    ) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"UPDATE boundary_t SET v = 1 WHERE id = {mine}"))
            locked.set()
            await other.wait()
            await conn.execute(sa.text(f"UPDATE boundary_t SET v = 1 WHERE id = {theirs}"))

    results = await asyncio.gather(
        crosswise(1, 2, first_locked, second_locked),
        crosswise(2, 1, second_locked, first_locked),
        return_exceptions=True,
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], errors.DatabaseUnavailableError)
    assert failures[0].sqlstate == "40P01"
    assert failures[0].retryable


async def test_lock_timeout_and_statement_timeout_are_retryable(
    engine: sa_async.AsyncEngine,
) -> None:
    await _fresh_table(engine)
    async with engine.begin() as holder:
        await holder.execute(sa.text("SELECT * FROM boundary_t WHERE id = 1 FOR UPDATE"))
        with pytest.raises(errors.DatabaseUnavailableError) as lock_timeout:
            await _in_transaction(
                engine,
                "SET LOCAL lock_timeout = '50ms'",
                "UPDATE boundary_t SET v = 2 WHERE id = 1",
            )
    assert lock_timeout.value.sqlstate == "55P03"
    with pytest.raises(errors.DatabaseUnavailableError) as statement_timeout:
        await _in_transaction(engine, "SET LOCAL statement_timeout = '50ms'", "SELECT pg_sleep(5)")
    assert statement_timeout.value.sqlstate == "57014"


async def test_terminated_connection_is_retryable_and_the_pool_recovers_without_pre_ping(
    db_url: str,
) -> None:
    engine = db_engine.create(db_url, pool_size=1, max_overflow=0)
    async with engine.connect() as conn:
        pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
    killer = db_engine.create(db_url, pool_size=1)
    try:
        async with killer.connect() as conn:
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # The pooled connection is dead; without pre-ping the next statement finds out.
        with pytest.raises(errors.DatabaseUnavailableError) as caught:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        assert caught.value.retryable
        assert "[SQL" not in caught.value.message
        # ...and SQLAlchemy invalidated it: the next checkout connects afresh.
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    finally:
        await killer.dispose()
        await engine.dispose()


async def test_refused_connect_is_retryable() -> None:
    engine = db_engine.create("postgresql://postgres@127.0.0.1:9/postgres", pool_size=1)
    try:
        with pytest.raises(errors.DatabaseUnavailableError) as caught:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        assert caught.value.retryable
    finally:
        await engine.dispose()


async def test_pool_checkout_timeout_is_retryable(db_url: str) -> None:
    engine = db_engine.create(db_url, pool_size=1, max_overflow=0, pool_timeout_seconds=0.05)
    try:
        async with engine.connect() as held:
            await held.execute(sa.text("SELECT 1"))
            with pytest.raises(errors.DatabaseUnavailableError):
                async with engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_reopening_a_dropped_pooled_connection_while_refused_is_retryable(
    db_url: str,
) -> None:
    """A pooled connection that was dropped is reopened on its next checkout, outside any
    statement: a refusal there (the server restarting) is a retryable database error too,
    never a bare ConnectionRefusedError that a job would count as an internal failure."""
    url = sa.engine.make_url(db_url)
    proxy = tcp_proxy_kit.TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    engine = db_engine.create(
        url.set(port=port).render_as_string(hide_password=False), pool_size=1, max_overflow=0
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        await proxy.go_dark()  # the pooled connection is reset, new ones are refused
        with pytest.raises(errors.DatabaseUnavailableError):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        # The pool invalidated it: this checkout reopens it, and the server refuses.

        async def select_in_a_transaction() -> None:
            async with engine.begin() as conn:
                await conn.execute(sa.text("SELECT 1"))

        refused = await outcomes.error_of(select_in_a_transaction())
        assert isinstance(refused, errors.DatabaseUnavailableError), refused
        assert refused.retryable
        assert "ConnectionRefusedError" in refused.message
        await proxy.come_back()
        async with engine.begin() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
        await proxy.stop()
