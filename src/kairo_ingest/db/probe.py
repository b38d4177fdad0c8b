"""``/readyz``'s own database connection: one raw asyncpg connection, kept and reused.

The probe used to borrow from the worker's pool with a 2 s timeout, so a busy worker
made a healthy database look down. Now it holds exactly one connection of its
own (count it in the replica's connection budget), opens it lazily, drops it on any
error or timeout and opens a new one on the next check. Checks are serialized on it and
bounded by a short timeout, so a probe never waits long and never piles up connections.
No named prepared statements (``statement_cache_size=0``): safe behind a
transaction-mode pooler.

It lives in ``db/`` because it is an adapter: asyncpg's errors become
:class:`kairo_ingest.errors.DatabaseUnavailableError` here (no SQL, no password).
"""

from __future__ import annotations

import asyncio

import asyncpg

from kairo_ingest import errors
from kairo_ingest.db import engine as db_engine

APPLICATION_NAME = "kairo-ingest-readyz"
# What a dead or confused connection raises (a backend killed under it can leave the
# protocol in a state asyncpg reports as InternalClientError).
_DRIVER_ERRORS = (
    TimeoutError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
REVISION_SQL = "SELECT version_num FROM alembic_version"


class ReadyProbe:
    """The schema revision, read over one kept connection; ``None`` when not migrated."""

    def __init__(self, database_url: str, *, timeout_seconds: float) -> None:
        self._dsn = db_engine.plain_dsn(database_url)
        self._display = db_engine.describe_url(database_url)
        self._timeout_seconds = timeout_seconds
        self._conn: asyncpg.Connection | None = None
        self._lock: asyncio.Lock | None = None  # made on first use, on the probe's loop

    async def schema_revision(self) -> str | None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        try:
            async with asyncio.timeout(self._timeout_seconds):
                async with self._lock:
                    return await self._revision()
        except asyncio.CancelledError:
            self._drop()
            raise
        except _DRIVER_ERRORS as exc:
            self._drop()
            reason = "no answer in time" if isinstance(exc, TimeoutError) else None
            raise errors.DatabaseUnavailableError(
                f"cannot reach PostgreSQL at {self._display}: {reason or errors.describe(exc)}"
            ) from exc

    async def _revision(self) -> str | None:
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            self._conn = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout_seconds,
                statement_cache_size=0,
                server_settings={"application_name": APPLICATION_NAME},
            )
        try:
            value = await self._conn.fetchval(REVISION_SQL)
        except asyncpg.UndefinedTableError:
            return None
        return None if value is None else str(value)

    def _drop(self) -> None:
        """Forget the connection; terminate() never waits on one in an unknown state."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=self._timeout_seconds)
            except _DRIVER_ERRORS:
                conn.terminate()
