"""A pooled connection that one worker loop holds for its lifetime, in AUTOCOMMIT mode.

The claim loop and the finisher each issue a statement every few milliseconds under
load. Checking a connection out of the pool for each would add the pool's pre-ping and a
BEGIN/COMMIT pair (five round trips around one); holding one connection in AUTOCOMMIT
mode makes each of those single-statement operations one round trip. After any error
the connection is invalidated and the next :meth:`get` checks out a fresh one, so a
database restart costs one failed statement.

Session settings a loop needs (``setup``) are undone (``reset``) before the connection
goes back to the pool, so they never leak to other users of the pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import dberrors


class DedicatedConnection:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        *,
        setup: Sequence[sa.Executable] = (),
        reset: Sequence[sa.Executable] = (),
    ) -> None:
        self._engine = engine
        # Behind a transaction-mode pooler a session SET would stay on whichever server
        # connection ran it, for other clients to inherit: keep no session state there.
        pooled = db_engine.transaction_pooled(engine)
        self._setup = () if pooled else tuple(setup)
        self._reset = () if pooled else tuple(reset)
        self._conn: sa_async.AsyncConnection | None = None

    async def get(self) -> sa_async.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            await self.discard()
            with dberrors.mapped("connect"):
                conn = await self._engine.connect()
                try:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    for statement in self._setup:
                        await conn.execute(statement)
                except BaseException:
                    await conn.invalidate()
                    await conn.close()
                    raise
                self._conn = conn
        return self._conn

    async def discard(self) -> None:
        """Drop the connection after an error; the next get() opens a new one."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()

    async def close(self) -> None:
        """Undo the session settings and return the connection to the pool."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            for statement in self._reset:
                await conn.execute(statement)
        except Exception:  # noqa: BLE001 - a connection we cannot reset must not be reused
            with contextlib.suppress(Exception):
                await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()
