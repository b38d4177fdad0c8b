"""Raw items by day: the partitions of ``raw_apify_items``, made ahead, dropped past retention.

``raw_apify_items`` is partitioned by range on ``raw_partition_at``, the time its run
files its items under (migration 0008; ``docs/raw-retention.md``). There is one partition
per UTC day, ``raw_apify_items_pYYYYMMDD``, and ``raw_apify_items_legacy``, the table as
it was before partitioning (its rows, and whatever an older release still writes, carry
``'-infinity'``).

:func:`maintain` is one round of the worker's maintenance unit, in one transaction that
only one process runs at a time (an advisory lock; others skip the round):

* it creates the partitions of today and the next ``days_ahead`` days that are missing,
  as plain tables attached afterwards (``ATTACH PARTITION`` takes ``SHARE UPDATE
  EXCLUSIVE`` on the parent, which lets reads and writes go on; an empty table has
  nothing to scan);
* with a retention, it drops the daily partitions that end at or before ``now() -
  retention``, and the legacy partition once its conversion time (plus a day for older
  releases still writing during a rollout) is that old. ``DROP TABLE`` of a partition
  locks the parent for an instant; every DDL statement waits at most
  ``LOCK_TIMEOUT`` for its lock, and a round that times out is retried later;
* in the same transaction it moves ``raw_item_retention.dropped_before`` up to the end of
  the newest partition it dropped: a run filed before that time has no raw items any
  more. Reuse (``db/opening.py``) and renormalization (:func:`raw_items_kept`) read it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import logs
from kairo_ingest.db import tables

PARENT = "raw_apify_items"
LEGACY = "raw_apify_items_legacy"
LEGACY_UNTIL = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
"""The legacy partition's upper bound (migration 0008): below any time the code files under."""
DAYS_AHEAD = 7
LEGACY_MARGIN = dt.timedelta(days=1)
"""How long after the conversion an older release may still have written legacy items."""
LOCK_TIMEOUT = "2s"
# An arbitrary 64-bit key: held by the one process running a round of partition upkeep.
ADVISORY_LOCK_KEY = 0x6B6169726F726177

_DAILY = re.compile(r"raw_apify_items_p(\d{8})")

_h = tables.raw_item_retention

# The time before which runs' raw items are gone ('-infinity': none dropped), as a scalar
# subquery for statements about runs.
DROPPED_BEFORE = sa.func.coalesce(
    sa.select(_h.c.dropped_before).scalar_subquery(),
    sa.literal_column("'-infinity'::timestamp with time zone"),
)

_KEPT = sa.text(
    """
    SELECT r.raw_partition_at >= coalesce(h.dropped_before, '-infinity')
    FROM apify_runs AS r CROSS JOIN raw_item_retention AS h
    WHERE r.id = CAST(:run_id AS uuid)
    FOR SHARE OF h
    """
)

_CHILDREN = sa.text(
    """
    SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
    WHERE i.inhparent = CAST(:parent AS regclass)
    """
)

_STATE = sa.text(
    """
    SELECT now() AS now, h.converted_at, h.dropped_before
    FROM raw_item_retention AS h
    """
).columns(
    sa.column("now", sa.DateTime(timezone=True)),
    _h.c.converted_at,
    _h.c.dropped_before,
)

_MOVE_HORIZON = sa.text(
    """
    UPDATE raw_item_retention
    SET dropped_before = greatest(
            coalesce(dropped_before, '-infinity'), CAST(:until AS timestamptz)),
        updated_at = now()
    """
)

_log = logs.get(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Round:
    """What one round of upkeep did. ``ahead_seconds``: how far past now the newest daily
    partition reaches (None when the round was skipped)."""

    skipped: bool = False
    created: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    ahead_seconds: float | None = None


def daily_name(day: dt.date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def _bound(day: dt.date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'"


def _day_of(name: str) -> dt.date | None:
    match = _DAILY.fullmatch(name)
    return dt.datetime.strptime(match.group(1), "%Y%m%d").date() if match else None


def _end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


async def raw_items_kept(conn: sa_async.AsyncConnection, run_id: uuid.UUID) -> bool:
    """Are the run's raw items still kept (not dropped by retention)? Shares a lock with
    a drop in progress, so it answers as of after that drop."""
    kept = (await conn.execute(_KEPT, {"run_id": run_id})).scalar()
    return kept is not False


async def create_day(conn: sa_async.AsyncConnection, day: dt.date) -> str:
    """Create and attach the partition of one UTC day (no check that it is missing)."""
    name = daily_name(day)
    await conn.execute(sa.text(f"CREATE TABLE {name} (LIKE {PARENT})"))
    await conn.execute(
        sa.text(
            f"ALTER TABLE {PARENT} ATTACH PARTITION {name}"
            f" FOR VALUES FROM ({_bound(day)}) TO ({_bound(day + dt.timedelta(days=1))})"
        )
    )
    return name


async def maintain(
    engine: sa_async.AsyncEngine,
    *,
    retention: dt.timedelta | None,
    days_ahead: int = DAYS_AHEAD,
) -> Round:
    """One round of upkeep (see the module docstring); None retention keeps everything."""
    async with engine.begin() as conn:
        locked = await conn.scalar(
            sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
        )
        if not locked:
            return Round(skipped=True)
        await conn.execute(sa.text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        state = (await conn.execute(_STATE)).one()
        now: dt.datetime = state.now
        children = set((await conn.execute(_CHILDREN, {"parent": PARENT})).scalars())
        days = {d for d in map(_day_of, children) if d is not None}

        today = now.astimezone(dt.UTC).date()
        created = []
        for offset in range(days_ahead + 1):
            day = today + dt.timedelta(days=offset)
            if day not in days:
                created.append(await create_day(conn, day))
                days.add(day)

        dropped: list[tuple[str, dt.datetime]] = []
        if retention is not None:
            cutoff = now - retention
            dropped = [(daily_name(d), _end(d)) for d in sorted(days) if _end(d) <= cutoff]
            if LEGACY in children and state.converted_at + LEGACY_MARGIN <= cutoff:
                dropped.insert(0, (LEGACY, LEGACY_UNTIL))
            if dropped:
                # The horizon first (the row lock a renormalization's check shares), then
                # the tables: both commit together.
                until = max(end for _, end in dropped)
                await conn.execute(_MOVE_HORIZON, {"until": until})
                for name, _ in dropped:
                    await conn.execute(sa.text(f"DROP TABLE {name}"))
    names = tuple(name for name, _ in dropped)
    if created or names:
        _log.info("raw_partitions_changed", created=created, dropped=list(names))
    # The newest day is today or later, never one just dropped.
    ahead = (_end(max(days)) - now).total_seconds()
    return Round(created=tuple(created), dropped=names, ahead_seconds=ahead)
