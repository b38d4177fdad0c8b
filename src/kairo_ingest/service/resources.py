"""Opening the database the settings describe: a URL, or the embedded PostgreSQL.

Every command goes through :func:`database`, so "unreachable", "not migrated" and
"embedded" are handled once, with one clear line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config, errors, logs
from kairo_ingest.db import embedded, migrate
from kairo_ingest.db import engine as db_engine

log = logs.get(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionBudget:
    """How KAIRO_DATABASE_POOL_SIZE is spent: a hard ceiling on one process's connections.

    The pool takes what LISTEN, the /readyz probe (a connection of its own, see
    ``db/probe.py``) and the heartbeat (an engine of its own, see
    ``worker/lease_keeper.py``) and, when it is on, the console (a read-only pool of 2 and
    one connection for its actions, see ``console/access.py``) leave, with no overflow. The
    worker's claim and finisher connections are checked out of that pool, so handlers
    share the rest: they wait on Apify, not on the database.
    """

    total: int
    listen: int
    probe: int
    heartbeat: int = 1
    console: int = 0

    @property
    def pool(self) -> int:
        return self.total - self.listen - self.probe - self.heartbeat - self.console

    @classmethod
    def of(cls, settings: config.Settings) -> ConnectionBudget:
        return cls(
            total=settings.database_pool_size,
            listen=1 if settings.listen_notify else 0,
            probe=1,
            console=config.CONSOLE_CONNECTIONS if settings.console_port is not None else 0,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Database:
    url: str
    engine: sa_async.AsyncEngine
    embedded: bool

    @property
    def display_url(self) -> str:
        return db_engine.describe_url(self.url)


async def ping(engine: sa_async.AsyncEngine, display_url: str) -> None:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    except TimeoutError as exc:
        raise errors.DatabaseUnavailableError(
            f"cannot reach PostgreSQL at {display_url}: no answer in {CONNECT_TIMEOUT_SECONDS:g}s"
        ) from exc
    except errors.DatabaseError as exc:
        raise type(exc)(
            f"cannot reach PostgreSQL at {display_url}: {exc.message}",
            sqlstate=exc.sqlstate,
            constraint_name=exc.constraint_name,
        ) from exc


@contextlib.asynccontextmanager
async def database(
    settings: config.Settings,
    *,
    require_head: bool = True,
    pool_size: int | None = None,
) -> AsyncIterator[Database]:
    """Yield an engine on the configured database, ready to use.

    The engine's pool is sized by :class:`ConnectionBudget` (KAIRO_DATABASE_POOL_SIZE),
    with no overflow, so the budget is a hard ceiling. ``pool_size`` overrides it for a
    command that needs the engine only to open and check the database (``console``).

    The embedded database is migrated on the spot. An external one must already be at
    head when ``require_head`` is set; otherwise :class:`SchemaNotAtHeadError` names
    ``kairo-ingest migrate``.
    """
    pg: embedded.EmbeddedPostgres | None = None
    if settings.database_url is None:
        pg = await embedded.start(settings.data_dir)
        url = pg.url
    else:
        url = settings.database_url.get_secret_value()
    budget = ConnectionBudget.of(settings)
    engine = db_engine.create(
        url,
        pool_size=budget.pool if pool_size is None else pool_size,
        max_overflow=0,
        pooler=settings.database_pooler,
    )
    if settings.listen_notify_ignored:
        log.info(
            "listen_notify_ignored",
            reason="KAIRO_DATABASE_POOLER=transaction: no LISTEN behind a transaction pooler; "
            "the worker polls every KAIRO_POLL_INTERVAL_SECONDS",
        )
    db = Database(url=url, engine=engine, embedded=pg is not None)
    try:
        await ping(engine, db.display_url)
        if pg is not None:
            await migrate.upgrade(url, migrations=settings.migrations_dir)
        elif require_head:
            await migrate.check_at_head(engine, migrations=settings.migrations_dir)
        yield db
    finally:
        await engine.dispose()
        if pg is not None:
            await pg.stop()
