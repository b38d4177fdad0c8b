"""Timestamps in the forms the actors emit, always to an aware UTC ``datetime`` or None.

- ISO 8601 strings: ``2025-12-10T23:51:23.000Z``, ``2021-03-17T13:58:16+00:00``. A ``Z`` or
  an offset is honoured and converted to UTC.
- Strings without a zone (``2026-01-07 20:00:09``) are read as UTC: nothing in the item
  says otherwise, and a fixed rule is better than a guess per machine.
- A bare date (``2021-12-21``) is midnight UTC.
- Epoch seconds (TikTok ``createTime``) and epoch milliseconds (LinkedIn
  ``posted_at.timestamp``) through :func:`from_epoch_seconds` / :func:`from_epoch_millis`.
- Anything else, including relative text (``10 months ago``, ``49m``), is None: a date we
  cannot read is unknown, never a guess. Nothing here raises.
"""

from __future__ import annotations

import datetime as dt
import math
import re

UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

_ISO = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?)?"
    r"\s*(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)
_DIGITS = re.compile(r"[0-9]{1,20}")


def _zone(text: str | None) -> dt.tzinfo:
    if text is None or text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or "0")
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def parse_iso(value: object) -> dt.datetime | None:
    """An ISO 8601 date or date-time string as aware UTC; None for anything else."""
    if not isinstance(value, str):
        return None
    match = _ISO.fullmatch(value.strip())
    if match is None:
        return None
    fraction = (match["fraction"] or "").ljust(6, "0")[:6]
    try:
        moment = dt.datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"] or 0),
            int(match["minute"] or 0),
            int(match["second"] or 0),
            int(fraction),
            tzinfo=_zone(match["zone"]),
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _from_epoch(value: object, per_second: int) -> dt.datetime | None:
    number: float | int
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        return None
    if isinstance(number, float) and not math.isfinite(number):
        return None
    if number <= 0:
        return None
    try:
        return _EPOCH + dt.timedelta(milliseconds=number * 1000 / per_second)
    except (OverflowError, ValueError):
        return None


def from_epoch_seconds(value: object) -> dt.datetime | None:
    """Epoch seconds (int, float or a digit string) as aware UTC; None when not positive."""
    return _from_epoch(value, 1)


def from_epoch_millis(value: object) -> dt.datetime | None:
    """Epoch milliseconds (int, float or a digit string) as aware UTC; None when not positive."""
    return _from_epoch(value, 1000)
