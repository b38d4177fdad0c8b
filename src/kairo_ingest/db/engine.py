"""The async engine (SQLAlchemy 2 on asyncpg), with the error boundary installed.

Behind a transaction-mode pooler (PgBouncer ``pool_mode = transaction``, Supabase,
Heroku) consecutive transactions of one client connection may run on different server
connections, so nothing may outlive a transaction on the server: no named prepared
statement cached across transactions (asyncpg's statement cache and SQLAlchemy's
prepared-statement cache are off, and every statement gets a unique name, as SQLAlchemy
documents for PgBouncer), no session ``SET``, no LISTEN.
"""

from __future__ import annotations

import contextlib
import uuid
import weakref
from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config, errors
from kairo_ingest.db import dberrors, dsn, one_server


def asyncpg_url(url: str) -> sa.URL:
    """Accept ``postgresql://``, ``postgres://`` or ``postgresql+asyncpg://``; return asyncpg's."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise errors.ConfigError(
            "KAIRO_DATABASE_URL is not a valid URL "
            "(percent-encode '@', ':' and '/' in the user name and password)",
            variable="KAIRO_DATABASE_URL",
        ) from None
    written = config.database_password_forms(url)
    if written and parsed.password not in written:
        # An unencoded "/" or "?" ended the password early: part of it would show as host.
        raise errors.ConfigError(
            "KAIRO_DATABASE_URL is not a valid URL "
            "(percent-encode '@', ':' and '/' in the user name and password)",
            variable="KAIRO_DATABASE_URL",
        )
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        dsn.split(parsed)  # refuses libpq parameters we cannot honour, naming the variable
        return parsed.set(drivername="postgresql+asyncpg")
    raise errors.ConfigError(
        f"KAIRO_DATABASE_URL must be a PostgreSQL URL, not {parsed.drivername!r}",
        variable="KAIRO_DATABASE_URL",
    )


def plain_dsn(url: str) -> str:
    """A libpq-style DSN for a raw ``asyncpg.connect(dsn)`` (LISTEN, admin, tests).

    libpq parameters are rewritten into the form asyncpg's DSN parser understands.
    """
    bare, options = dsn.split(asyncpg_url(url))
    query = {**bare.query, **dsn.asyncpg_dsn_query(options)}
    return bare.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


def create(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    application_name: str = "kairo-ingest",
    pool_timeout_seconds: float = 30.0,
    pooler: config.DatabasePooler = config.DatabasePooler.NONE,
) -> sa_async.AsyncEngine:
    bare, options = dsn.split(asyncpg_url(url))
    connect_args: dict[str, object] = {
        "timeout": 10,
        "command_timeout": 60,
        **options.connect_args(application_name),
    }
    transaction_pooler = config.DatabasePooler(pooler) is config.DatabasePooler.TRANSACTION
    if transaction_pooler:
        connect_args.update(
            statement_cache_size=0,  # asyncpg's own cache of named statements
            prepared_statement_cache_size=0,  # SQLAlchemy's asyncpg dialect cache
            prepared_statement_name_func=_unique_statement_name,
        )
    engine = sa_async.create_async_engine(
        bare,
        poolclass=dberrors.TranslatingPool,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_seconds,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    dberrors.install(engine)
    if transaction_pooler:
        one_server.install(engine)
        _TRANSACTION_POOLED.add(engine.sync_engine)
    _ORIGINS[engine.sync_engine] = (url, config.DatabasePooler(pooler))
    return engine


def sibling(
    engine: sa_async.AsyncEngine, *, pool_size: int, application_name: str
) -> sa_async.AsyncEngine:
    """A new engine on the same database with the same connection options (TLS, pooler
    mode, ...), for a loop that must never wait on ``engine``'s pool (the heartbeat).

    The engine's own URL no longer holds the libpq parameters (they became connect
    arguments), so the URL it was created from is kept here.
    """
    url, pooler = _ORIGINS[engine.sync_engine]
    return create(
        url,
        pool_size=pool_size,
        max_overflow=0,
        application_name=application_name,
        pooler=pooler,
    )


_TRANSACTION_POOLED: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
_ORIGINS: weakref.WeakKeyDictionary[sa.Engine, tuple[str, config.DatabasePooler]] = (
    weakref.WeakKeyDictionary()
)


def _unique_statement_name() -> str:
    """A name no other statement on any server connection behind the pooler can have."""
    return f"__kairo_{uuid.uuid4().hex}__"


@contextlib.asynccontextmanager
async def autocommit(engine: sa_async.AsyncEngine) -> AsyncIterator[sa_async.AsyncConnection]:
    """A pooled connection in AUTOCOMMIT mode, for reads that need no transaction.

    On asyncpg each statement is then one round trip: no BEGIN before it, no ROLLBACK
    when the connection goes back to the pool (switching the mode is client-side only).
    """
    async with engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


def transaction_pooled(engine: sa_async.AsyncEngine) -> bool:
    """True when ``engine`` talks to a transaction-mode pooler: keep no session state."""
    return engine.sync_engine in _TRANSACTION_POOLED


def describe_url(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return asyncpg_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
