"""The console's own way to the database: a small read-only pool, one connection for its
actions, and a short cache for its heavy panels. It never touches the worker's pool.

* **Reads**: a pool of :data:`READ_POOL_SIZE` connections, no overflow. Each page runs in
  one ``READ ONLY`` transaction (one snapshot for the whole page) with a server-side
  ``SET LOCAL statement_timeout`` of :data:`STATEMENT_TIMEOUT_SECONDS`: a slow query is
  cancelled by PostgreSQL, and nothing the console reads can write. ``SET LOCAL`` lives
  only as long as the transaction, so it works behind a transaction-mode pooler too. A
  page that waits longer than :data:`POOL_WAIT_SECONDS` for a connection answers 503.
* **Writes** (retry, cancel): an engine of :data:`WRITE_POOL_SIZE` connection, and an
  :class:`asyncio.Lock` so one action runs at a time; its connections carry
  ``lock_timeout`` and ``statement_timeout`` (on a direct server; behind a transaction
  pooler session settings cannot be kept, and asyncpg's 60 s command timeout bounds a
  statement). A job whose row stays locked past the lock timeout is reported as not
  changed instead of holding the action.

Both count in the connection budget (``config.CONSOLE_CONNECTIONS``,
``service/resources.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import dberrors
from kairo_ingest.db import engine as db_engine

READ_POOL_SIZE = 2
WRITE_POOL_SIZE = 1
STATEMENT_TIMEOUT_SECONDS = 5.0
WRITE_STATEMENT_TIMEOUT_SECONDS = 10.0
LOCK_TIMEOUT_SECONDS = 3.0
POOL_WAIT_SECONDS = 10.0
CACHE_SECONDS = 5.0

T = TypeVar("T")


class ReadPool:
    def __init__(self, engine: sa_async.AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def beside(cls, engine: sa_async.AsyncEngine) -> ReadPool:
        """A read-only pool on ``engine``'s database (same URL and options)."""
        return cls(
            db_engine.sibling(
                engine, pool_size=READ_POOL_SIZE, application_name="kairo-ingest-console"
            )
        )

    @contextlib.asynccontextmanager
    async def read(
        self, *, statement_timeout_seconds: float | None = None
    ) -> AsyncIterator[sa_async.AsyncConnection]:
        """A connection in a read-only transaction with a server-side statement timeout
        (:data:`STATEMENT_TIMEOUT_SECONDS` unless a heavy panel asks for more)."""
        timeout = statement_timeout_seconds or STATEMENT_TIMEOUT_SECONDS
        with dberrors.mapped("console"):
            try:
                async with asyncio.timeout(POOL_WAIT_SECONDS):
                    conn = await self.engine.connect()
            except TimeoutError:
                # The page answers 503, as for a database that does not answer.
                raise errors.DatabaseUnavailableError(
                    "every console connection stayed busy; try again shortly"
                ) from None
            try:
                conn = await conn.execution_options(postgresql_readonly=True)
                async with conn.begin():
                    await conn.execute(
                        sa.text("SELECT set_config('statement_timeout', :ms, true)"),
                        {"ms": str(int(timeout * 1000))},
                    )
                    yield conn
            finally:
                await conn.close()

    async def dispose(self) -> None:
        await self.engine.dispose()


class WritePath:
    def __init__(self, engine: sa_async.AsyncEngine) -> None:
        self.engine = engine
        self.lock = asyncio.Lock()

    @classmethod
    def beside(cls, engine: sa_async.AsyncEngine) -> WritePath:
        writes = db_engine.sibling(
            engine, pool_size=WRITE_POOL_SIZE, application_name="kairo-ingest-console-actions"
        )
        if not db_engine.transaction_pooled(writes):
            event.listen(writes.sync_engine, "connect", _bound_statements)
        return cls(writes)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[sa_async.AsyncEngine]:
        """The write engine, while no other console action uses it."""
        async with self.lock:
            yield self.engine

    async def dispose(self) -> None:
        await self.engine.dispose()


def _bound_statements(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET lock_timeout = '{int(LOCK_TIMEOUT_SECONDS * 1000)}ms'")
    cursor.execute(f"SET statement_timeout = '{int(WRITE_STATEMENT_TIMEOUT_SECONDS * 1000)}ms'")
    cursor.close()


@dataclasses.dataclass
class _Entry:
    at: float
    value: Any


class Cache:
    """Values kept for ``ttl_seconds``; concurrent misses of one key share one computation,
    so twenty refreshing tabs cost the database one query per key per ``ttl_seconds``.

    With ``serve_stale``, an expired value is still answered at once while one task
    computes the next in the background: a panel that takes seconds to compute is slow
    only the first time.
    """

    def __init__(
        self,
        *,
        ttl_seconds: float = CACHE_SECONDS,
        serve_stale: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.serve_stale = serve_stale
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        self._refreshes: set[asyncio.Task[Any]] = set()

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.at < self.ttl_seconds:
            return entry.value  # type: ignore[no-any-return]
        pending = self._inflight.get(key)
        if entry is not None and self.serve_stale:
            if pending is None:
                future = self._claim(key)
                task = asyncio.create_task(self._compute(key, compute, future))
                self._refreshes.add(task)
                task.add_done_callback(self._refreshed)
            return entry.value  # type: ignore[no-any-return]
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._compute(key, compute, self._claim(key))

    def _claim(self, key: Hashable) -> asyncio.Future[Any]:
        """Mark ``key`` as being computed, before anything awaits."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    def _refreshed(self, task: asyncio.Task[Any]) -> None:
        self._refreshes.discard(task)
        if not task.cancelled():
            task.exception()  # a failed refresh leaves the old value; the next one retries

    async def _compute(
        self, key: Hashable, compute: Callable[[], Awaitable[T]], future: asyncio.Future[Any]
    ) -> T:
        try:
            value = await compute()
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when alone
            else:
                future.cancel()
            raise
        else:
            future.set_result(value)
            self._entries[key] = _Entry(self._clock(), value)
            if len(self._entries) > 256:
                self._expire()
            return value
        finally:
            del self._inflight[key]

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if now - e.at >= self.ttl_seconds]:
            del self._entries[key]

    async def aclose(self) -> None:
        for task in list(self._refreshes):
            task.cancel()
        if self._refreshes:
            await asyncio.gather(*self._refreshes, return_exceptions=True)
