"""The async engine and session factory (SQLAlchemy 2 on asyncpg)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import dberrors


def asyncpg_url(url: str) -> sa.URL:
    """Accept ``postgresql://``, ``postgres://`` or ``postgresql+asyncpg://``; return asyncpg's."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise errors.ConfigError("KAIRO_DATABASE_URL is not a valid URL") from exc
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise errors.ConfigError(
        f"KAIRO_DATABASE_URL must be a PostgreSQL URL, not {parsed.drivername!r}",
        variable="KAIRO_DATABASE_URL",
    )


def plain_dsn(url: str) -> str:
    """A libpq-style DSN (for raw asyncpg connections such as LISTEN)."""
    return asyncpg_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    application_name: str = "kairo-ingest",
    pool_timeout_seconds: float = 30.0,
) -> sa_async.AsyncEngine:
    engine = sa_async.create_async_engine(
        asyncpg_url(url),
        poolclass=dberrors.TranslatingPool,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_seconds,
        pool_recycle=1800,
        connect_args={
            "server_settings": {"application_name": application_name},
            "timeout": 10,
            "command_timeout": 60,
        },
    )
    dberrors.install(engine)
    return engine


def describe_url(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    return asyncpg_url(url).set(drivername="postgresql").render_as_string(hide_password=True)
