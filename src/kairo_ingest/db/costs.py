"""What Apify runs cost: today's spend against a cap, and the ``costs`` report."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import tables

_r = tables.apify_runs
DEFAULT_REPORT_DAYS = 30


def accounts_default() -> sa.ColumnElement[str]:
    return sa.literal_column("'default'", sa.Text())


def window_start(window_seconds: int) -> sa.ColumnElement[Any]:
    """The start of the current cap window on the database's clock (the UTC day at 86400)."""
    epoch = sa.func.extract("epoch", sa.func.now())
    return sa.func.to_timestamp(sa.func.floor(epoch / window_seconds) * window_seconds)


async def spent_in_window(
    conn: sa_async.AsyncConnection,
    *,
    window_seconds: int,
    account: str | None = None,
    brand_id: uuid.UUID | None = None,
) -> tuple[decimal.Decimal, float]:
    """``(USD spent in the current window, seconds until it resets)`` for an account or brand.

    Spend is what Apify reported for runs that finished in the window: a run in flight
    counts once it ends (the overshoot docs/spend.md explains).
    """
    start = window_start(window_seconds)
    query = sa.select(
        sa.func.coalesce(sa.func.sum(_r.c.usage_total_usd), 0),
        sa.func.extract(
            "epoch", start + sa.func.make_interval(0, 0, 0, 0, 0, 0, window_seconds) - sa.func.now()
        ),
    ).where(_r.c.finished_at >= start)
    if account is not None:
        query = query.where(_r.c.account == account)
    if brand_id is not None:
        query = query.where(_r.c.brand_id == brand_id)
    row = (await conn.execute(query)).one()
    return decimal.Decimal(row[0]), float(row[1])


async def brand_cap(conn: sa_async.AsyncConnection, brand_id: uuid.UUID) -> decimal.Decimal | None:
    b = tables.brand_caps
    value = await conn.scalar(sa.select(b.c.daily_cap_usd).where(b.c.brand_id == brand_id))
    return None if value is None else decimal.Decimal(value)


def _per_run(since: dt.date) -> sa.Subquery:
    """One row per started run since a UTC day: its day, account, brand, actor, cost and
    why its kept dataset is partial (the run ledger's ``partial_reason``).

    A run's day is the UTC day it finished (or was created, while it runs). The two
    range conditions ahead of the day's own test say the same thing in a form the
    indexes on ``finished_at`` and ``created_at`` can serve.
    """
    start = sa.func.timezone("UTC", sa.cast(since, sa.DateTime()))
    day = sa.func.date(sa.func.timezone("UTC", sa.func.coalesce(_r.c.finished_at, _r.c.created_at)))
    return (
        sa.select(
            day.label("day"),
            sa.func.coalesce(_r.c.account, accounts_default()).label("account"),
            _r.c.brand_id,
            _r.c.actor_id,
            _r.c.usage_total_usd,
            _r.c.partial_reason,
        )
        .where(_r.c.apify_run_id.is_not(None))
        .where(
            sa.or_(
                _r.c.finished_at >= start,
                sa.and_(_r.c.finished_at.is_(None), _r.c.created_at >= start),
            )
        )
        .subquery()
    )


# The breakdowns the console shows, in one pass over the runs: per day and account, and
# per account, brand and actor over the whole window.
_SETS = (("day", "account"), ("account",), ("brand_id",), ("actor_id",))


async def breakdowns(
    conn: sa_async.AsyncConnection, *, since: dt.date, until: dt.date | None = None
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Runs and spend since a UTC day (to ``until``, inclusive), grouped by each of
    ``_SETS`` (``GROUPING SETS``: one scan): :func:`report`'s figures, summed coarser."""
    c = _per_run(since).c
    dims = [c.day, c.account, c.brand_id, c.actor_id]
    grouping = sa.func.grouping(*dims).label("g")
    query = (
        sa.select(
            *dims,
            grouping,
            sa.func.count().label("runs"),
            sa.func.coalesce(sa.func.sum(c.usage_total_usd), 0).label("usd"),
        )
        .where(c.day >= since)
        .group_by(sa.func.grouping_sets(*(sa.tuple_(*(c[n] for n in names)) for names in _SETS)))
    )
    if until is not None:
        query = query.where(c.day <= until)
    order = ("day", "account", "brand_id", "actor_id")
    masks = {
        sum(1 << (3 - order.index(n)) for n in order if n not in names): names for names in _SETS
    }
    out: dict[tuple[str, ...], list[dict[str, Any]]] = {names: [] for names in _SETS}
    for r in (await conn.execute(query)).all():
        names = masks[r.g]
        row: dict[str, Any] = {name: getattr(r, name) for name in names}
        if "day" in row:
            row["day"] = row["day"].isoformat()
        if "brand_id" in row:
            row["brand_id"] = str(row["brand_id"])
        row["runs"] = int(r.runs)
        row["usage_total_usd"] = round(float(r.usd), 6)
        out[names].append(row)
    for rows in out.values():
        rows.sort(key=lambda row: tuple(str(v) for k, v in row.items() if k in order))
    return out


async def report(
    engine: sa_async.AsyncEngine,
    *,
    account: str | None = None,
    brand_id: uuid.UUID | None = None,
    since: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Spend per UTC day, account, brand and actor; runs without a reported cost count 0.
    Each row also says how much of it went on runs that ended partial: aborted, timed out,
    or stopped at their charge cap."""
    if since is None:
        since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=DEFAULT_REPORT_DAYS)
    per_run = _per_run(since)

    def spent_by(reason: str) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(
            sa.func.sum(per_run.c.usage_total_usd).filter(per_run.c.partial_reason == reason), 0
        ).label(f"{reason}_usd")

    c = per_run.c
    query = (
        sa.select(
            c.day,
            c.account,
            c.brand_id,
            c.actor_id,
            sa.func.count().label("runs"),
            sa.func.coalesce(sa.func.sum(c.usage_total_usd), 0).label("usd"),
            spent_by("aborted"),
            spent_by("timed_out"),
            spent_by("charge_cap"),
        )
        .where(c.day >= since)
        .group_by(c.day, c.account, c.brand_id, c.actor_id)
        .order_by(c.day, c.account, c.brand_id, c.actor_id)
    )
    if account is not None:
        query = query.where(c.account == account)
    if brand_id is not None:
        query = query.where(c.brand_id == brand_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "day": r.day.isoformat(),
            "account": r.account,
            "brand_id": str(r.brand_id),
            "actor_id": r.actor_id,
            "runs": int(r.runs),
            "usage_total_usd": round(float(r.usd), 6),
            # Of which: runs whose kept dataset is partial, by why (the run ledger).
            "aborted_usd": round(float(r.aborted_usd), 6),
            "timed_out_usd": round(float(r.timed_out_usd), 6),
            "charge_cap_usd": round(float(r.charge_cap_usd), 6),
        }
        for r in rows
    ]
