"""Driver errors become the error tree's database errors at the queue boundary."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kairo_ingest import errors
from kairo_ingest.db import dberrors


class _Orig(Exception):
    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _dbapi(
    sqlstate: str | None, cls: type[sa.exc.DBAPIError] = sa.exc.OperationalError
) -> sa.exc.DBAPIError:
    return cls("SELECT 1", {}, _Orig("boom", sqlstate))


@pytest.mark.parametrize("code", ["57P01", "08006", "53300"])
def test_connection_loss_and_shutdown_are_unavailable_and_retryable(code: str) -> None:
    mapped = dberrors.translate(_dbapi(code), "claim")
    assert isinstance(mapped, errors.DatabaseUnavailableError)
    assert mapped.retryable
    assert mapped.message.startswith("claim: ")


def test_refused_connection_is_unavailable() -> None:
    mapped = dberrors.translate(ConnectionRefusedError(111, "refused"), "heartbeat")
    assert isinstance(mapped, errors.DatabaseUnavailableError)


def test_other_database_errors_are_not_retryable() -> None:
    mapped = dberrors.translate(_dbapi("42601", sa.exc.ProgrammingError), "reap")
    assert type(mapped) is errors.DatabaseError
    assert not mapped.retryable


def test_mapped_reraises_with_the_cause_kept() -> None:
    original = _dbapi("57P01")
    with pytest.raises(errors.DatabaseUnavailableError) as caught, dberrors.mapped("claim"):
        raise original
    assert caught.value.__cause__ is original


def test_mapped_leaves_our_own_errors_alone() -> None:
    with pytest.raises(errors.LeaseLostError), dberrors.mapped("fence"):
        raise errors.LeaseLostError("gone")
