"""Every SQLSTATE the boundary names is mapped, in the manner of "all exceptions mapped".

The tables in ``db.dberrors`` are the specification; these tests check each entry maps
to the class its failure calls for, with a message that carries the SQLSTATE and no SQL.
"""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa

from kairo_ingest import errors
from kairo_ingest.db import dberrors
from kairo_ingest.domain import retry

# The SQLSTATEs and their classes, spelled out independently of the module's own tables.
RETRYABLE = ["08000", "08003", "08006", "08001", "08004", "57P01", "57P02", "57P03"]
RETRYABLE += ["40P01", "40001", "55P03", "57014", "53300"]
CONSTRAINT = ["23000", "23502", "23503", "23505", "23514", "23P01"]
# Values the database refuses: NUL / bad UTF-8 (22021), NaN in jsonb (22P02), division,
# JSON nested past max_stack_depth (54001), an index row too big (54000).
REFUSED_VALUE = ["22012", "22021", "22P02", "54000", "54001"]
PERMANENT = ["42601", "42P01", "3D000", "28P01", "XX000", "42P05"]


class _AdapterError(Exception):
    """Shaped like SQLAlchemy's asyncpg adapter errors: ``sqlstate`` plus the driver cause."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(code: str) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError(
        "UPDATE jobs SET secret_column = 1", {}, _AdapterError("the server said no", code)
    )


@pytest.mark.parametrize("code", RETRYABLE)
def test_connection_and_transient_sqlstates_are_retryable(code: str) -> None:
    mapped = dberrors.translate(_wrapped(code))
    assert type(mapped) is errors.DatabaseUnavailableError
    assert mapped.retryable
    assert mapped.kind is errors.ErrorKind.DATABASE


@pytest.mark.parametrize("code", CONSTRAINT)
def test_integrity_violations_are_constraint_errors_and_permanent(code: str) -> None:
    mapped = dberrors.translate(_wrapped(code))
    assert type(mapped) is errors.DatabaseConstraintError
    assert not mapped.retryable


@pytest.mark.parametrize("code", REFUSED_VALUE)
def test_refused_values_are_value_errors_and_permanent(code: str) -> None:
    """The pipeline isolates the one item the database refuses (pipeline/store.py)."""
    mapped = dberrors.translate(_wrapped(code))
    assert type(mapped) is errors.DatabaseValueError
    assert not mapped.retryable


@pytest.mark.parametrize("code", PERMANENT)
def test_everything_else_is_a_permanent_database_error(code: str) -> None:
    mapped = dberrors.translate(_wrapped(code))
    assert type(mapped) is errors.DatabaseError
    assert not mapped.retryable


def test_every_sqlstate_the_module_names_is_mapped_as_documented() -> None:
    for code in dberrors.RETRYABLE_SQLSTATES:
        assert type(dberrors.translate(_wrapped(code))) is errors.DatabaseUnavailableError, code
    for klass in dberrors.RETRYABLE_CLASSES:
        code = klass + "000"
        assert type(dberrors.translate(_wrapped(code))) is errors.DatabaseUnavailableError, code
    code = dberrors.CONSTRAINT_CLASS + "505"
    assert type(dberrors.translate(_wrapped(code))) is errors.DatabaseConstraintError
    for klass in dberrors.VALUE_CLASSES:
        code = klass + "000"
        assert type(dberrors.translate(_wrapped(code))) is errors.DatabaseValueError, code
    assert set(RETRYABLE) - {"08000", "08003", "08006", "08001", "08004"} <= set(
        dberrors.RETRYABLE_SQLSTATES
    )


def test_every_sqlstate_table_maps_to_a_retry_action() -> None:
    """Each table the module names, through ``errors.classify`` and ``retry.decide``:
    connection loss and transient conflicts retry; constraint violations, refused values
    and every other state fail at once. A disconnect also invalidates the connection."""
    fail, again = retry.Action.FAIL, retry.Action.RETRY
    cases = dict.fromkeys(dberrors.RETRYABLE_SQLSTATES, again)
    cases.update({klass + "000": again for klass in dberrors.RETRYABLE_CLASSES})
    cases.update(dict.fromkeys(dberrors.DISCONNECT_SQLSTATES, again))
    cases.update({klass + "000": again for klass in dberrors.DISCONNECT_CLASSES})
    cases.update({klass + "000": fail for klass in dberrors.VALUE_CLASSES})
    cases.update({dberrors.CONSTRAINT_CLASS + "000": fail, "XX000": fail, "42601": fail})
    for code, action in cases.items():
        kind, retryable, snooze = errors.classify(dberrors.translate(_wrapped(code)))
        assert kind is errors.ErrorKind.DATABASE, code
        decided = retry.decide(retryable=retryable, snooze=snooze, attempts=1, max_attempts=3)
        assert decided is action, code
    for code in dberrors.DISCONNECT_SQLSTATES | {k + "000" for k in dberrors.DISCONNECT_CLASSES}:
        assert dberrors.is_disconnect(_wrapped(code)), code


@pytest.mark.parametrize("code", RETRYABLE + CONSTRAINT + REFUSED_VALUE + PERMANENT)
def test_messages_carry_the_sqlstate_and_never_the_statement(code: str) -> None:
    mapped = dberrors.translate(_wrapped(code), "claim")
    assert f"SQLSTATE {code}" in mapped.message
    assert mapped.message.startswith("claim: ")
    assert "[SQL" not in mapped.message
    assert "secret_column" not in mapped.message
    assert isinstance(mapped, errors.DatabaseError)
    assert mapped.sqlstate == code


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        ConnectionResetError(104, "reset"),
        OSError(24, "Too many open files"),
        TimeoutError(),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        sa.exc.TimeoutError("QueuePool limit reached"),
        asyncpg.exceptions.InternalClientError("cannot switch to state 15"),
        sa.exc.PendingRollbackError("Can't reconnect until invalid transaction is rolled back"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_errors_without_sqlstate_that_mean_no_connection_are_retryable(exc: Exception) -> None:
    mapped = dberrors.translate(exc)
    assert type(mapped) is errors.DatabaseUnavailableError
    assert dberrors.is_disconnect(exc)


@pytest.mark.parametrize("code", ["08006", "57P01", "57P02", "57P03"])
def test_connection_level_sqlstates_invalidate_the_connection(code: str) -> None:
    assert dberrors.is_disconnect(_wrapped(code))


@pytest.mark.parametrize("code", ["40P01", "40001", "55P03", "57014", "23505", "42601"])
def test_statement_level_sqlstates_keep_the_connection(code: str) -> None:
    assert not dberrors.is_disconnect(_wrapped(code))


def test_real_asyncpg_errors_are_read_through_the_adapter() -> None:
    driver = asyncpg.exceptions.UniqueViolationError("duplicate key value")
    driver.sqlstate = "23505"  # set by asyncpg from the server's message
    driver.constraint_name = "ix_jobs_active"
    mapped = dberrors.translate(driver)
    assert type(mapped) is errors.DatabaseConstraintError
    assert mapped.constraint_name == "ix_jobs_active"
    assert "ix_jobs_active" in mapped.message


def test_cancellation_is_never_translated() -> None:
    class _Ctx:
        original_exception: BaseException = KeyboardInterrupt()
        is_disconnect = False

    assert dberrors._on_error(_Ctx()) is None  # type: ignore[arg-type]


def test_adapter_errors_are_classified_by_their_driver_cause() -> None:
    """SQLAlchemy's asyncpg adapter wraps the driver error; the cause decides."""
    driver = asyncpg.exceptions.InternalClientError("cannot switch to state 15")
    adapter = _AdapterError("cannot switch to state 15", None)
    adapter.__cause__ = driver
    wrapped = sa.exc.DBAPIError("SELECT 1", {}, adapter)
    assert type(dberrors.translate(wrapped)) is errors.DatabaseUnavailableError
    assert dberrors.is_disconnect(wrapped)
