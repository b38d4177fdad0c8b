"""Async alembic environment.

The URL comes from the alembic config (set by ``kairo_ingest.db.migrate``) or from
KAIRO_DATABASE_URL. Migrations run inside one transaction, under a session-level
advisory lock taken before it, so replicas that migrate at the same moment queue up; the
second one then finds the schema at head and does nothing. The lock is the session's,
not the transaction's, because a migration that must work outside a transaction (0008's
concurrent index builds, in an ``autocommit_block``) commits what came before it: the
lock must outlive those commits. A waiting replica tries for the lock every
LOCK_RETRY_SECONDS rather than blocking in ``pg_advisory_lock``, for the reason given
where it does.
"""

from __future__ import annotations

import asyncio
import os
import time

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate, tables

config = context.config

LOCK_RETRY_SECONDS = 0.2


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("KAIRO_DATABASE_URL")
    if not url:
        raise RuntimeError("set KAIRO_DATABASE_URL (or use `kairo-ingest migrate`)")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=tables.metadata,
        compare_type=True,
        compare_server_default=True,
        include_name=tables.include_name,
    )
    lock = {"key": migrate.ADVISORY_LOCK_KEY}
    # Try, and between tries hold no transaction: a session blocked in pg_advisory_lock()
    # keeps a snapshot open, which a CREATE INDEX CONCURRENTLY of the holder waits for (a
    # deadlock). Each failed try commits, so the waiting session holds nothing.
    while not connection.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), lock).scalar():
        connection.commit()
        time.sleep(LOCK_RETRY_SECONDS)
    connection.commit()  # the lock stays: it is the session's
    with context.begin_transaction():
        context.run_migrations()
    # After a failure the engine's disposal closes the connection, which releases it too.
    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), lock)
    connection.commit()


async def _online() -> None:
    engine = db_engine.create(_url(), pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=tables.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
