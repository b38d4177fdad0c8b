"""The claim loop's connection, and a claim in as few round trips as the server allows.

The claim needs bitmap scans off (see :data:`kairo_ingest.queue.sql.CLAIM_PLANNER`).

* Direct to PostgreSQL: the setting is made once for the session of a connection this
  loop keeps for its lifetime, in AUTOCOMMIT mode; each claim is then one statement and
  one round trip. The connection is closed for good when the loop ends or after an error,
  never returned to the pool, so no other user inherits the setting.
* Behind a transaction-mode pooler (``KAIRO_DATABASE_POOLER=transaction``) consecutive
  transactions may run on different server connections and a session setting would be
  left behind for other clients: each claim is a short transaction with ``SET LOCAL``
  (BEGIN, SET LOCAL, the claim, COMMIT: four round trips).

At concurrency 200 on 2 cores the three extra round trips were about a tenth of the
worker's CPU samples (socket writes and asyncpg's transaction calls).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import dedicated


class ClaimConnection:
    def __init__(self, engine: sa_async.AsyncEngine) -> None:
        self.session_setting = not db_engine.transaction_pooled(engine)
        self._conn = dedicated.DedicatedConnection(engine, autocommit=self.session_setting)
        self._prepared: sa_async.AsyncConnection | None = None

    async def claim(
        self, *, owner: str, limit: int, lease_seconds: float, kinds: Collection[str]
    ) -> list[queue_jobs.Lease]:
        conn = await self._conn.get()
        if not self.session_setting:
            return await queue_jobs.claim(
                conn, owner=owner, limit=limit, lease_seconds=lease_seconds, kinds=kinds
            )
        if conn is not self._prepared:
            await queue_jobs.set_claim_planner(conn)
            self._prepared = conn
        return await queue_jobs.claim(
            conn,
            owner=owner,
            limit=limit,
            lease_seconds=lease_seconds,
            kinds=kinds,
            planner_set=True,
        )

    async def discard(self) -> None:
        """After an error: drop the connection; the next claim opens a new one."""
        self._prepared = None
        await self._conn.discard()

    async def close(self) -> None:
        """Hand the connection back, unless it carries the session setting: then close it."""
        if self.session_setting:
            await self.discard()
        else:
            await self._conn.close()
