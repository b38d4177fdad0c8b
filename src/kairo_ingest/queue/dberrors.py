"""Driver errors mapped onto the error tree at the queue's boundary.

SQLAlchemy wraps asyncpg errors in ``sqlalchemy.exc.DBAPIError`` (with the SQLSTATE on
``.orig.sqlstate``); a refused connection surfaces as a bare ``OSError``. Connection
loss, a server shutting down or out of connection slots become
:class:`~kairo_ingest.errors.DatabaseUnavailableError` (retryable); anything else is a
:class:`~kairo_ingest.errors.DatabaseError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from kairo_ingest import errors

# SQLSTATE classes that mean "the database is not reachable right now":
# 08 connection exception, 57P operator intervention (shutdown, crash, cannot connect now),
# 53 insufficient resources (too many connections, out of memory or disk).
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "57P", "53")


def sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    return code if isinstance(code, str) else None


def constraint_name(exc: BaseException) -> str | None:
    """The violated constraint of an IntegrityError, when the driver reports it."""
    orig = getattr(exc, "orig", None)
    for candidate in (getattr(orig, "__cause__", None), orig):
        name = getattr(candidate, "constraint_name", None)
        if isinstance(name, str):
            return name
    return None


def translate(exc: BaseException, operation: str) -> errors.KairoError:
    """The :class:`KairoError` that stands for a driver or pool error."""
    if isinstance(exc, errors.KairoError):
        return exc
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig if exc.orig is not None else exc
        message = f"{operation}: {type(orig).__name__}: {orig}"
        code = sqlstate(exc)
        if exc.connection_invalidated or (
            code is not None and code.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES)
        ):
            return errors.DatabaseUnavailableError(message)
        if isinstance(exc, sa.exc.InterfaceError):
            return errors.DatabaseUnavailableError(message)
        return errors.DatabaseError(message)
    if isinstance(exc, OSError | TimeoutError | sa.exc.TimeoutError):
        return errors.DatabaseUnavailableError(f"{operation}: {errors.describe(exc)}")
    return errors.DatabaseError(f"{operation}: {errors.describe(exc)}")


_DRIVER_ERRORS = (sa.exc.SQLAlchemyError, OSError, TimeoutError)


@contextlib.contextmanager
def mapped(operation: str) -> Iterator[None]:
    """Re-raise driver and pool errors raised in the block as :class:`KairoError`."""
    try:
        yield
    except _DRIVER_ERRORS as exc:
        raise translate(exc, operation) from exc
