"""Checkouts cost no round trip of their own (pool pre-ping dropped).

A pre-ping is ``BEGIN; SELECT 1; ROLLBACK`` (asyncpg's ``fetchrow(";")`` in a
transaction) on every checkout. Disconnects are handled where they happen instead: the
error boundary marks them retryable and SQLAlchemy invalidates the connection (see
``test_error_boundary``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from kairo_ingest.db import engine as db_engine


async def test_a_checkout_sends_no_ping(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[str] = []
    real_fetchrow = asyncpg.connection.Connection.fetchrow

    async def counting_fetchrow(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        if query.strip() in ("", ";", "SELECT 1"):
            pings.append(query)
        return await real_fetchrow(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "fetchrow", counting_fetchrow)
    engine = db_engine.create(db_url, pool_size=1, max_overflow=0)
    try:
        for _ in range(10):
            async with engine.connect() as conn:
                assert (await conn.execute(sa.text("SELECT 41 + 1"))).scalar_one() == 42
    finally:
        await engine.dispose()
    assert pings == []
