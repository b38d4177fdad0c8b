"""Where a queue operation runs, and the JSON its statements take.

An operation takes an engine (a pooled connection in AUTOCOMMIT mode per call: each is
one statement, its own transaction) or a connection the caller holds: the worker's
dedicated AUTOCOMMIT connections, or a transaction the caller commits.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sqlalchemy.ext import asyncio as sa_async

# Where an operation runs: an engine (a pooled connection per call), or a connection the
# caller holds (a worker's dedicated AUTOCOMMIT connection, or the caller's transaction).
Bind = sa_async.AsyncEngine | sa_async.AsyncConnection


@contextlib.asynccontextmanager
async def statement(bind: Bind) -> AsyncIterator[sa_async.AsyncConnection]:
    """A connection for an operation that is one statement.

    From an engine: a pooled connection in AUTOCOMMIT mode, so the statement is its own
    transaction (one round trip, no BEGIN/COMMIT). A caller's connection is used as it
    is: in AUTOCOMMIT mode each statement commits itself; inside a transaction the
    caller commits.
    """
    if isinstance(bind, sa_async.AsyncConnection):
        yield bind
        return
    async with bind.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


@contextlib.asynccontextmanager
async def transaction(bind: Bind) -> AsyncIterator[sa_async.AsyncConnection]:
    """A connection inside a transaction, for operations that need ``SET LOCAL``-style
    settings. From an engine: a pooled connection, committed at the end. A caller's
    connection already in a transaction is used as it is (the caller commits); otherwise a
    transaction is begun on it and committed here. (A connection in AUTOCOMMIT mode has no
    transaction to scope a local setting to: give these operations a normal connection.)
    """
    if isinstance(bind, sa_async.AsyncConnection):
        if bind.in_transaction():
            yield bind
            return
        async with bind.begin():
            yield bind
        return
    async with bind.begin() as conn:
        yield conn


def as_json(value: Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    # default=str: UUIDs and datetimes become strings; allow_nan=False: NaN and Infinity,
    # which PostgreSQL's jsonb rejects, fail here with a clear error instead.
    return json.dumps(value, default=str, separators=(",", ":"), allow_nan=False)
