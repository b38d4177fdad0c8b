"""KAIRO_DATABASE_POOLER=transaction: no session state, no LISTEN, no cached statements."""

from __future__ import annotations

import sqlalchemy as sa

from kairo_ingest import config
from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import sql as queue_sql
from kairo_ingest.worker import dedicated


def test_transaction_pooler_turns_listen_off_and_says_so() -> None:
    settings = config.load(database_pooler="transaction", listen_notify=True)
    assert settings.listen_notify is False
    assert settings.listen_notify_ignored
    direct = config.load(listen_notify=True)
    assert direct.listen_notify is True
    assert not direct.listen_notify_ignored


async def _bitmapscan_on_claim_connection(db_url: str, pooler: config.DatabasePooler) -> str:
    engine = db_engine.create(db_url, pool_size=1, max_overflow=0, pooler=pooler)
    claim = dedicated.DedicatedConnection(
        engine, setup=[queue_sql.CLAIM_SESSION_SETUP], reset=[queue_sql.CLAIM_SESSION_RESET]
    )
    try:
        conn = await claim.get()
        value = (await conn.execute(sa.text("SHOW enable_bitmapscan"))).scalar_one()
        await claim.close()
    finally:
        await engine.dispose()
    return str(value)


async def test_claim_connection_keeps_no_session_state_behind_a_transaction_pooler(
    db_url: str,
) -> None:
    pooled = await _bitmapscan_on_claim_connection(db_url, config.DatabasePooler.TRANSACTION)
    assert pooled == "on"
    direct = await _bitmapscan_on_claim_connection(db_url, config.DatabasePooler.NONE)
    assert direct == "off"


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
