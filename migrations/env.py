"""Async alembic environment.

The URL comes from the alembic config (set by ``kairo_ingest.db.migrate``) or from
KAIRO_DATABASE_URL. Migrations run inside one transaction that first takes a
transaction-level advisory lock, so replicas that migrate at the same moment queue
up; the second one then finds the schema at head and does nothing.
"""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection

from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate, tables

config = context.config


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
    )
    with context.begin_transaction():
        connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": migrate.ADVISORY_LOCK_KEY}
        )
        context.run_migrations()


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
