"""Statements that stay on one server connection behind a transaction-mode pooler.

A transaction-mode pooler (PgBouncer ``pool_mode = transaction``) may hand each
*transaction* of a client connection to a different server connection. asyncpg runs a
statement with parameters as two protocol exchanges: Parse/Describe/Sync, then
Bind/Execute/Sync. Inside a transaction both reach the same server connection; in
AUTOCOMMIT mode (the queue's single-statement operations, the worker's dedicated
connections) the pooler may switch servers in between, and the Bind fails with
``prepared statement "..." does not exist`` (SQLSTATE 26000). Seen through a real
PgBouncer 1.18 as soon as clients outnumber its server connections.

So, in pooler mode only, an AUTOCOMMIT statement runs inside its own
``BEGIN ... COMMIT``: two more round trips, but one server connection. PgBouncer 1.21+
with ``max_prepared_statements`` would make this unnecessary; Debian 12 ships 1.18.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg
from sqlalchemy.ext import asyncio as sa_async


class _OneServerCursor(sa_asyncpg.AsyncAdapt_asyncpg_cursor):
    __slots__ = ()

    async def _prepare_and_execute(self, operation: Any, parameters: Any) -> None:
        adapt = self._adapt_connection
        if adapt.isolation_level != "autocommit":
            await super()._prepare_and_execute(operation, parameters)  # type: ignore[no-untyped-call]
            return
        transaction = adapt._connection.transaction()
        await transaction.start()
        try:
            await super()._prepare_and_execute(operation, parameters)  # type: ignore[no-untyped-call]
        except BaseException:
            with contextlib.suppress(Exception):
                await transaction.rollback()
            raise
        await transaction.commit()


class _OneServerConnection(sa_asyncpg.AsyncAdapt_asyncpg_connection):
    __slots__ = ()
    _cursor_cls = _OneServerCursor


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if type(dbapi_connection) is sa_asyncpg.AsyncAdapt_asyncpg_connection:
        dbapi_connection.__class__ = _OneServerConnection


def install(engine: sa_async.AsyncEngine) -> None:
    """Make every AUTOCOMMIT statement of ``engine`` its own transaction."""
    event.listen(engine.sync_engine.pool, "connect", _on_connect)
