"""Timestamp parsing: every form the actors emit, always aware UTC or None."""

from __future__ import annotations

import datetime as dt

import pytest
from domain_samples import PROPERTY_SETTINGS
from hypothesis import given
from hypothesis import strategies as st

from kairo_ingest.domain.normalize import dates

UTC = dt.UTC


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-12-10T23:51:23.000Z", at(2025, 12, 10, 23, 51, 23)),
        ("2025-12-10T23:51:23Z", at(2025, 12, 10, 23, 51, 23)),
        ("2026-01-07T19:52:32.145Z", dt.datetime(2026, 1, 7, 19, 52, 32, 145000, tzinfo=UTC)),
        ("2021-03-17T13:58:16+00:00", at(2021, 3, 17, 13, 58, 16)),
        ("2021-03-17T15:58:16+02:00", at(2021, 3, 17, 13, 58, 16)),
        ("2021-03-17T08:58:16-0500", at(2021, 3, 17, 13, 58, 16)),
        (
            "2021-03-17T13:58:16.123456789Z",
            dt.datetime(2021, 3, 17, 13, 58, 16, 123456, tzinfo=UTC),
        ),
        ("2021-03-17T13:58", at(2021, 3, 17, 13, 58)),
        ("  2021-12-21  ", at(2021, 12, 21)),
    ],
)
def test_iso_with_zone_or_z_is_utc(value: str, expected: dt.datetime) -> None:
    parsed = dates.parse_iso(value)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo == UTC


def test_zoneless_date_time_is_read_as_utc() -> None:
    assert dates.parse_iso("2026-01-07 20:00:09") == at(2026, 1, 7, 20, 0, 9)


def test_bare_date_is_midnight_utc() -> None:
    assert dates.parse_iso("2021-12-21") == at(2021, 12, 21)


@pytest.mark.parametrize(
    "value",
    [
        "10 months ago",
        "49m",
        "Streamed 2 days ago",
        "yesterday",
        "",
        "2021-13-01",
        "2021-02-30T00:00:00Z",
        "2021-03-17T25:00:00Z",
        "2021-03-17T10:00:00+25:00",
        "March 17, 2021",
        "0000-01-01",
        "9999-12-31T23:59:59-05:00",
        None,
        1767799606,
        {"date": "2021-12-21"},
        ["2021-12-21"],
        True,
    ],
)
def test_unreadable_dates_are_none(value: object) -> None:
    assert dates.parse_iso(value) is None


def test_epoch_seconds() -> None:
    assert dates.from_epoch_seconds(1767799606) == at(2026, 1, 7, 15, 26, 46)
    assert dates.from_epoch_seconds("1767799606") == at(2026, 1, 7, 15, 26, 46)
    assert dates.from_epoch_seconds(1767799606.5) == dt.datetime(
        2026, 1, 7, 15, 26, 46, 500000, tzinfo=UTC
    )


def test_epoch_millis() -> None:
    assert dates.from_epoch_millis(1767812409202) == dt.datetime(
        2026, 1, 7, 19, 0, 9, 202000, tzinfo=UTC
    )


@pytest.mark.parametrize(
    "value", [0, -5, None, True, "abc", "", 10**30, float("nan"), float("inf"), 1e300, [1], {}]
)
def test_bad_epochs_are_none(value: object) -> None:
    assert dates.from_epoch_seconds(value) is None
    assert dates.from_epoch_millis(value) is None


@PROPERTY_SETTINGS
@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), st.none(), st.booleans()))
def test_parsers_never_raise_and_return_aware_utc(value: object) -> None:
    for parse in (dates.parse_iso, dates.from_epoch_seconds, dates.from_epoch_millis):
        parsed = parse(value)
        assert parsed is None or parsed.utcoffset() == dt.timedelta(0)


@PROPERTY_SETTINGS
@given(st.datetimes(timezones=st.just(UTC), min_value=dt.datetime(1971, 1, 1)))
def test_iso_round_trip(moment: dt.datetime) -> None:
    assert dates.parse_iso(moment.isoformat()) == moment
    assert dates.parse_iso(moment.isoformat().replace("+00:00", "Z")) == moment
