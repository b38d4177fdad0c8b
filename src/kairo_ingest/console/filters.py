"""Filters from a query string (or a bulk action's stored selection), checked.

A bad value is a :class:`errors.UsageError` (the page answers 400 and says which), never
a 500. The jobs filter's ``handle`` is resolved to brand ids here, through its index.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from kairo_ingest import errors
from kairo_ingest.console import queries
from kairo_ingest.domain import statuses

JOB_FILTER_KEYS = ("status", "kind", "error_kind", "q", "brand", "handle", "since", "until")
RUN_FILTER_KEYS = ("status", "platform", "actor", "account", "source")
MAX_TEXT = 200


def as_uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise errors.UsageError(f"{what} is not a UUID: {raw[:80]!r}") from None


def as_time(raw: str, what: str) -> dt.datetime:
    """An ISO date or date-time; without a zone it is UTC."""
    try:
        value = dt.datetime.fromisoformat(raw.strip())
    except ValueError:
        raise errors.UsageError(
            f"{what} is not a date or time (YYYY-MM-DD or YYYY-MM-DDTHH:MM): {raw[:80]!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _text(query: Mapping[str, str], key: str) -> str | None:
    value = (query.get(key) or "").strip()
    if len(value) > MAX_TEXT:
        raise errors.UsageError(f"{key} is longer than {MAX_TEXT} characters")
    return value or None


def job_params(query: Mapping[str, str]) -> dict[str, str]:
    """The jobs filter's own keys, blank ones dropped (for links and stored selections)."""
    return {k: v.strip() for k in JOB_FILTER_KEYS if (v := query.get(k) or "").strip()}


async def job_filter(conn: queries.Conn, query: Mapping[str, str]) -> queries.JobFilter:
    status = _text(query, "status")
    if status is not None and status not in {s.value for s in statuses.JobStatus}:
        raise errors.UsageError(f"unknown status {status!r}")
    kind = _text(query, "kind")
    if kind is not None and kind not in {k.value for k in statuses.JobKind}:
        raise errors.UsageError(f"unknown kind {kind!r}")
    brand = _text(query, "brand")
    since = _text(query, "since")
    until = _text(query, "until")
    handle = _text(query, "handle")
    text = _text(query, "q")
    if text is not None and not queries.error_words(text):
        raise errors.UsageError("the error search needs a word (letters or digits)")
    brand_ids: tuple[uuid.UUID, ...] | None = None
    if handle is not None:
        if not queries.words(handle):
            raise errors.UsageError("the handle needs a word (letters or digits)")
        brand_ids = tuple(await queries.brands_by_handle(conn, handle))
    return queries.JobFilter(
        status=status,
        kind=kind,
        error_kind=_text(query, "error_kind"),
        text=text,
        brand_id=as_uuid(brand, "brand") if brand else None,
        brand_ids=brand_ids,
        since=as_time(since, "since") if since else None,
        until=as_time(until, "until") if until else None,
    )


def run_params(query: Mapping[str, str]) -> dict[str, str]:
    return {k: v.strip() for k in RUN_FILTER_KEYS if (v := query.get(k) or "").strip()}


def run_filter(query: Mapping[str, str]) -> queries.RunFilter:
    status = _text(query, "status")
    if status is not None:
        status = status.upper()
        if status not in {s.value for s in statuses.RunStatus}:
            raise errors.UsageError(f"unknown run status {status!r}")
    platform = _text(query, "platform")
    if platform is not None and platform not in {p.value for p in statuses.Platform}:
        raise errors.UsageError(f"unknown platform {platform!r}")
    source = _text(query, "source")
    return queries.RunFilter(
        status=status,
        platform=platform,
        actor_id=_text(query, "actor"),
        account=_text(query, "account"),
        source_id=as_uuid(source, "source") if source else None,
    )


def cursor(query: Mapping[str, str]) -> queries.Cursor | None:
    raw = query.get("after")
    return queries.Cursor.decode(raw) if raw else None
