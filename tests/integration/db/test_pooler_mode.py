"""KAIRO_DATABASE_POOLER=transaction: no session state, no LISTEN, no cached statements."""

from __future__ import annotations

import sqlalchemy as sa

from kairo_ingest import config
from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import dedicated


def test_transaction_pooler_turns_listen_off_and_says_so() -> None:
    settings = config.load(database_pooler="transaction", listen_notify=True)
    assert settings.listen_notify is False
    assert settings.listen_notify_ignored
    direct = config.load(listen_notify=True)
    assert direct.listen_notify is True
    assert not direct.listen_notify_ignored


async def _bitmapscan_after_a_claim(db_url: str, pooler: config.DatabasePooler) -> str:
    """Claim on the worker's claim connection, then read the planner setting it needs."""
    engine = db_engine.create(db_url, pool_size=1, max_overflow=0, pooler=pooler)
    claim = dedicated.DedicatedConnection(engine, autocommit=False)
    try:
        conn = await claim.get()
        await queue_jobs.claim(conn, owner="pooler-test", limit=5, lease_seconds=30)
        value = (await conn.execute(sa.text("SHOW enable_bitmapscan"))).scalar_one()
        await conn.rollback()
        await claim.close()
    finally:
        await engine.dispose()
    return str(value)


async def test_the_claim_leaves_no_session_state_on_its_connection(db_url: str) -> None:
    """The claim turns bitmap scans off with SET LOCAL inside its own transaction: behind a
    transaction-mode pooler a session SET would stay on a server connection for other
    clients to inherit."""
    for pooler in config.DatabasePooler:
        assert await _bitmapscan_after_a_claim(db_url, pooler) == "on"


async def test_pooled_engine_prepares_nothing_it_keeps(db_url: str) -> None:
    engine = db_engine.create(
        db_url, pool_size=1, max_overflow=0, pooler=config.DatabasePooler.TRANSACTION
    )
    try:
        assert db_engine.transaction_pooled(engine)
        for _ in range(3):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT CAST(:x AS int)"), {"x": 1})
                names = (
                    await conn.execute(sa.text("SELECT name FROM pg_prepared_statements"))
                ).scalars()
                # Only our unique names (never asyncpg's __asyncpg_stmt_N__, which collide on
                # a server connection shared by several clients), and none piling up.
                kept = list(names)
                assert all(name.startswith("__kairo_") for name in kept), kept
                assert len(kept) <= 2, kept
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            assert (await auto.execute(sa.text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
