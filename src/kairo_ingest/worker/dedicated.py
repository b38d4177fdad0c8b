"""A pooled connection that one worker loop holds for its lifetime, in AUTOCOMMIT mode.

The claim loop and the finisher each issue a statement every few milliseconds under
load. Checking a connection out of the pool for each would add a BEGIN/COMMIT pair
around each; holding one connection in AUTOCOMMIT mode makes each of those
single-statement operations one round trip. After any error
the connection is invalidated and the next :meth:`get` checks out a fresh one, so a
database restart costs one failed statement.

With ``autocommit=False`` the caller scopes its own transactions (the heartbeat sets its
statement timeout with ``SET LOCAL``-style settings that need one).

It keeps no session state (a loop that needs a setting uses ``SET LOCAL`` inside its own
transaction), so it is safe behind a transaction-mode pooler.
"""

from __future__ import annotations

import contextlib

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import dberrors


class DedicatedConnection:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        *,
        autocommit: bool = True,
    ) -> None:
        self._engine = engine
        self._autocommit = autocommit
        self._conn: sa_async.AsyncConnection | None = None

    async def get(self) -> sa_async.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            await self.discard()
            with dberrors.mapped("connect"):
                conn = await self._engine.connect()
                try:
                    if self._autocommit:
                        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
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
        """Return the connection to the pool."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.close()
