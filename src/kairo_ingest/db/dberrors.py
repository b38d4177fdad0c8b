"""The one database error boundary: driver and pool errors become :mod:`kairo_ingest.errors`.

Modelled on a connector-level exception wrapper: the translation sits on the engine
itself (:func:`install`), so every statement that runs through one of our engines, in
``db/``, ``queue/`` or ``pipeline/``, surfaces a :class:`~kairo_ingest.errors.KairoError`
and nothing above ``db/`` needs to know SQLAlchemy or asyncpg exist. Two hooks cover it:

* SQLAlchemy's ``handle_error`` event replaces every exception raised while a statement
  (or BEGIN / COMMIT / ROLLBACK) runs. For connection-level failures it also sets
  ``is_disconnect`` so that SQLAlchemy invalidates the connection and the pool never hands
  it out again: that replaces the pool's pre-ping, which cost a round trip per checkout.
* :class:`TranslatingPool` translates what the pool raises on checkout: a refused or
  timed-out connect, a server refusing logins, and the pool's own checkout timeout.

Classification is by SQLSTATE (see :data:`RETRYABLE_SQLSTATES`, :data:`RETRYABLE_CLASSES`,
:data:`CONSTRAINT_CLASS`, :data:`VALUE_CLASSES`): connection trouble and transient
conflicts are :class:`~kairo_ingest.errors.DatabaseUnavailableError` (retryable);
integrity violations are :class:`~kairo_ingest.errors.DatabaseConstraintError`; values
the database refuses are :class:`~kairo_ingest.errors.DatabaseValueError`; everything
else is a plain :class:`~kairo_ingest.errors.DatabaseError`. Messages hold the SQLSTATE,
a short reason and the server's one-line message, never the statement (SQLAlchemy's
``[SQL: ...]``) and, through :mod:`kairo_ingest.redaction`, never the password. The
SQLSTATE table: docs/architecture.md (database errors).
"""

from __future__ import annotations

import contextlib
import re
import typing
from collections.abc import Iterator

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import interfaces as sa_interfaces
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors

# Exact SQLSTATEs that are worth another try after a short wait.
RETRYABLE_SQLSTATES: dict[str, str] = {
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "55P03": "lock not available (lock timeout)",
    "57014": "query canceled (statement timeout)",
    "57P01": "server shutting down (admin shutdown)",
    "57P02": "server crashed (crash shutdown)",
    "57P03": "server cannot accept connections now",
    "57P05": "connection closed (idle session timeout)",
    "53300": "too many connections",
    # A demoted primary after a failover answers writes with 25006 until we reconnect.
    "25006": "read-only transaction (failover in progress?)",
    # A statement prepared before a schema change or behind a pooler is gone or stale;
    # SQLAlchemy's asyncpg adapter clears its cache, so the statement succeeds again.
    "0A000": "cached statement plan is invalid",
    "26000": "prepared statement does not exist",
}
# Whole SQLSTATE classes that are worth another try.
RETRYABLE_CLASSES: dict[str, str] = {
    "08": "connection exception",
    "53": "insufficient resources",
}
# SQLSTATEs after which the connection itself is gone: SQLAlchemy must invalidate it.
DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05", "25006"})
DISCONNECT_CLASSES = frozenset({"08"})
CONSTRAINT_CLASS = "23"
# A value the database refuses (data exceptions; program limits such as JSON nested past
# the server's stack depth or an index row too big): the same value fails again, so the
# pipeline isolates it instead of retrying (pipeline/store.py).
VALUE_CLASSES: dict[str, str] = {"22": "a value the database refuses", "54": "a program limit"}
CONSTRAINT_REASON = "integrity constraint violation"

SERVER_MESSAGE_CHARS = 160

# Raised by the driver or the network with no SQLSTATE: the connection is unusable.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, refused, reset, EMFILE
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    sa.exc.TimeoutError,  # the pool's own checkout timeout
    # A statement after a lost connection invalidated its transaction (an ORM session
    # also raises it after a failed flush, and a rolled-back savepoint: we use neither).
    sa.exc.PendingRollbackError,
)


def _driver_error(exc: BaseException) -> BaseException:
    """The innermost driver exception behind a SQLAlchemy wrapper or adapter."""
    current = exc
    if isinstance(current, sa.exc.DBAPIError) and current.orig is not None:
        current = current.orig
    # SQLAlchemy's asyncpg adapter errors chain the asyncpg exception as their cause.
    cause = current.__cause__
    driver_types = (
        asyncpg.exceptions.PostgresError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.InternalClientError,  # a protocol state broken by a dead server
    )
    if isinstance(cause, driver_types) and not isinstance(current, driver_types):
        return typing.cast(BaseException, cause)
    return current


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE behind ``exc`` (a translated error, a wrapper or a driver error)."""
    if isinstance(exc, errors.DatabaseError):
        return exc.sqlstate
    for candidate in (exc, getattr(exc, "orig", None), _driver_error(exc)):
        code = getattr(candidate, "sqlstate", None)
        if isinstance(code, str) and code:
            return code
    return None


def constraint_name(exc: BaseException) -> str | None:
    """The violated constraint of an integrity error, when the driver reports it."""
    if isinstance(exc, errors.DatabaseError):
        return exc.constraint_name
    for candidate in (_driver_error(exc), getattr(exc, "orig", None)):
        name = getattr(candidate, "constraint_name", None)
        if isinstance(name, str):
            return name
    return None


def classify_sqlstate(code: str) -> tuple[type[errors.DatabaseError], str]:
    """The error class and short reason for one SQLSTATE."""
    if code in RETRYABLE_SQLSTATES:
        return errors.DatabaseUnavailableError, RETRYABLE_SQLSTATES[code]
    if code[:2] in RETRYABLE_CLASSES:
        return errors.DatabaseUnavailableError, RETRYABLE_CLASSES[code[:2]]
    if code[:2] == CONSTRAINT_CLASS:
        return errors.DatabaseConstraintError, CONSTRAINT_REASON
    if code[:2] in VALUE_CLASSES:
        return errors.DatabaseValueError, VALUE_CLASSES[code[:2]]
    return errors.DatabaseError, "database error"


def is_disconnect(exc: BaseException) -> bool:
    """True when the connection that raised ``exc`` can no longer be used."""
    code = sqlstate(exc)
    if code is not None:
        return code in DISCONNECT_SQLSTATES or code[:2] in DISCONNECT_CLASSES
    return isinstance(_driver_error(exc), _CONNECTION_ERRORS)


# asyncpg's client-side encoding errors quote the bound value ("invalid input for query
# argument $1: 'secret' (...)"), and data exceptions often quote the value they refused.
_QUOTED_ARGUMENT = re.compile(r"(query argument \$\d+): .*", re.DOTALL)


def _server_message(driver: BaseException, code: str | None = None) -> str:
    """The server's (or driver's) one-line message: no statement, no DETAIL, no QUERY,
    and no bound value (an actor input or a source's settings may hold a secret)."""
    text = str(driver)
    first = text.strip().splitlines()[0] if text.strip() else type(driver).__name__
    first = _QUOTED_ARGUMENT.sub(r"\1", first)
    if code is not None and code[:2] in VALUE_CLASSES:
        first = first.split(": ", 1)[0]  # 'invalid input syntax for type uuid: "..."'
    if len(first) > SERVER_MESSAGE_CHARS:
        first = first[: SERVER_MESSAGE_CHARS - 1] + "…"
    return first


def translate(exc: BaseException, operation: str | None = None) -> errors.KairoError:
    """The :class:`KairoError` that stands for a driver, adapter or pool error."""
    if isinstance(exc, errors.KairoError):
        return exc
    prefix = f"{operation}: " if operation else ""
    driver = _driver_error(exc)
    code = sqlstate(exc)
    if code is not None:
        cls, reason = classify_sqlstate(code)
        name = constraint_name(exc) if cls is errors.DatabaseConstraintError else None
        about = f" on {name}" if name else ""
        return cls(
            f"{prefix}{reason}{about} (SQLSTATE {code}): {_server_message(driver, code)}",
            sqlstate=code,
            constraint_name=name,
        )
    if isinstance(driver, _CONNECTION_ERRORS) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    ):
        return errors.DatabaseUnavailableError(
            f"{prefix}connection failed: {type(driver).__name__}: {_server_message(driver)}"
        )
    return errors.DatabaseError(
        f"{prefix}database error: {type(driver).__name__}: {_server_message(driver)}"
    )


_DRIVER_ERRORS = (
    sa.exc.SQLAlchemyError,
    asyncpg.exceptions.PostgresError,
    asyncpg.exceptions.InterfaceError,
    OSError,
    TimeoutError,
)


@contextlib.contextmanager
def mapped(operation: str) -> Iterator[None]:
    """Re-raise driver and pool errors raised in the block as :class:`KairoError`.

    With :func:`install` on the engine most errors arrive translated already; this adds
    the operation's name to those that did not (errors raised outside any statement).
    """
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise translate(exc, operation) from exc


def _on_error(context: sa_interfaces.ExceptionContext) -> BaseException | None:
    original = context.original_exception
    if not isinstance(original, Exception) or isinstance(original, errors.KairoError):
        return None  # cancellation and exit exceptions pass through untouched
    if is_disconnect(original):
        context.is_disconnect = True  # SQLAlchemy invalidates the connection for us
    return translate(original)


class TranslatingPool(sa.pool.AsyncAdaptedQueuePool):
    """The engine's pool, translating every checkout failure: a new connection refused or
    timed out, the pool's own checkout timeout, and the *reconnect* of a pooled
    connection that was invalidated (after a dropped connection SQLAlchemy reopens it
    on its next checkout, outside ``_do_get`` and outside any statement, so neither
    ``handle_error`` nor a boundary around ``_do_get`` sees that error). A connection
    error is then a retryable :class:`~kairo_ingest.errors.DatabaseUnavailableError`,
    never a bare ``ConnectionRefusedError`` that callers would take for a bug."""

    def connect(self) -> typing.Any:
        try:
            return super().connect()
        except errors.KairoError:
            raise
        except _DRIVER_ERRORS as exc:
            raise translate(exc, "connect") from exc


def install(engine: sa_async.AsyncEngine) -> None:
    """Translate every error of statements run through ``engine``."""
    event.listen(engine.sync_engine, "handle_error", _on_error)
