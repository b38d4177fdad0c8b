"""The boundary retries a failover's and a stale plan's errors, and never stores a bound value."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kairo_ingest import errors
from kairo_ingest.db import dberrors


class _DriverError(Exception):
    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _translate(message: str, code: str) -> errors.KairoError:
    return dberrors.translate(
        sa.exc.DBAPIError("UPDATE t SET x = $1", {}, _DriverError(message, code))
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("25006", "cannot execute UPDATE in a read-only transaction"),
        ("0A000", "cached statement plan is invalid due to a database schema change"),
        ("26000", 'prepared statement "__kairo_x__" does not exist'),
    ],
)
def test_a_failover_or_a_stale_statement_is_retryable(code: str, message: str) -> None:
    mapped = _translate(message, code)
    assert type(mapped) is errors.DatabaseUnavailableError
    assert mapped.retryable


def test_a_demoted_primary_invalidates_the_connection() -> None:
    exc = sa.exc.DBAPIError("UPDATE", {}, _DriverError("read-only transaction", "25006"))
    assert dberrors.is_disconnect(exc)


@pytest.mark.parametrize(
    ("code", "message", "value"),
    [
        (
            "22000",
            "invalid input for query argument $1: 'tok-s3cr3t-value' (expected str)",
            "s3cr3t",
        ),
        ("22P02", 'invalid input syntax for type uuid: "cookie=s3cr3t"', "s3cr3t"),
    ],
)
def test_a_refused_value_never_reaches_the_message(code: str, message: str, value: str) -> None:
    mapped = _translate(message, code)
    assert isinstance(mapped, errors.DatabaseValueError)
    assert value not in mapped.message
    assert f"SQLSTATE {code}" in mapped.message
