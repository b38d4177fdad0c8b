"""Count the round trips an engine makes, from SQLAlchemy's events (tests and benchmarks).

On the asyncpg dialect SQLAlchemy issues no BEGIN of its own: the DBAPI adapter starts an
asyncpg transaction (one ``BEGIN`` round trip) lazily, just before the first statement
of a connection that is not in AUTOCOMMIT mode, and ``COMMIT`` / ``ROLLBACK`` are round
trips only when such a transaction was started (a connection that ran nothing, or ran
in AUTOCOMMIT, ends with none). So the counter looks at the adapter's state:

* ``before_cursor_execute``: one statement; plus a ``BEGIN`` when the adapter has no
  transaction yet and is not in autocommit;
* ``commit`` / ``rollback`` (connection events) and the pool's ``reset`` on return: a
  ``COMMIT`` / ``ROLLBACK`` when the adapter holds a started transaction.

Statements are counted once each: with the dialect's prepared-statement cache warm (the
default engine) a statement is one round trip; a cold cache adds a prepare round trip per
distinct statement and connection, which this does not count. LISTEN connections and
raw asyncpg connections are not engine connections and are not counted.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext import asyncio as sa_async


def _in_transaction(dbapi_connection: Any) -> bool:
    return getattr(dbapi_connection, "_transaction", None) is not None


def _autocommit(dbapi_connection: Any) -> bool:
    return bool(getattr(dbapi_connection, "autocommit", False))


class Counter:
    """Round trips by kind: ``statement``, ``begin``, ``commit``, ``rollback``."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts.clear()

    def snapshot(self) -> dict[str, int]:
        return {k: self.counts[k] for k in ("begin", "statement", "commit", "rollback")}

    # -- event handlers

    def _statement(self, conn: sa.Connection, *_: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        if not _in_transaction(dbapi) and not _autocommit(dbapi):
            self.counts["begin"] += 1
        self.counts["statement"] += 1

    def _commit(self, conn: sa.Connection) -> None:
        if _in_transaction(conn.connection.dbapi_connection):
            self.counts["commit"] += 1

    def _rollback(self, conn: sa.Connection) -> None:
        if _in_transaction(conn.connection.dbapi_connection):
            self.counts["rollback"] += 1

    def _reset(self, dbapi_connection: Any, *_: Any) -> None:
        if _in_transaction(dbapi_connection):
            self.counts["rollback"] += 1


@contextlib.contextmanager
def counting(engine: sa_async.AsyncEngine) -> Iterator[Counter]:
    """Count ``engine``'s round trips while the block runs."""
    counter = Counter()
    sync = engine.sync_engine
    hooks: list[tuple[Any, str, Any]] = [
        (sync, "before_cursor_execute", counter._statement),
        (sync, "commit", counter._commit),
        (sync, "rollback", counter._rollback),
        (sync.pool, "reset", counter._reset),
    ]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        yield counter
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)
