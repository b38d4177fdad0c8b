"""Raw items by day: partitions made ahead, whole days dropped past the retention, nothing
lost inside the window, and the horizon that reuse and renormalization read."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import items, raw_partitions, runs, tables

UTC = dt.UTC


async def _today(engine: sa_async.AsyncEngine) -> dt.date:
    async with engine.connect() as conn:
        now = await conn.scalar(sa.select(sa.func.now()))
    assert isinstance(now, dt.datetime)
    return now.astimezone(UTC).date()


async def _partitions(engine: sa_async.AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'raw_apify_items'::regclass"
            )
        )
        return {r.relname for r in rows}


async def _run_filed(engine: sa_async.AsyncEngine, days_ago: int | None, n_items: int) -> uuid.UUID:
    """A run filed ``days_ago`` days back (None: a legacy run, '-infinity') with its items."""
    async with engine.begin() as conn:
        source = (
            await conn.execute(
                sa.insert(tables.source_connections)
                .values(
                    brand_id=uuid.uuid4(),
                    platform="tiktok",
                    capability="profile_videos",
                    identifier=f"acme{uuid.uuid4().hex[:6]}",
                )
                .returning(tables.source_connections.c.id)
            )
        ).scalar_one()
        run = await runs.create_intent(
            conn,
            job_id=None,
            source_id=source,
            brand_id=uuid.uuid4(),
            actor_id="a~b",
            run_input={},
            item_cap=n_items,
            attempt=1,
        )
        filed = (
            sa.literal_column("'-infinity'::timestamptz")
            if days_ago is None
            else sa.func.now() - dt.timedelta(days=days_ago)
        )
        await conn.execute(
            sa.update(tables.apify_runs)
            .where(tables.apify_runs.c.id == run.id)
            .values(raw_partition_at=filed)
        )
        await items.insert_raw(
            conn, run.id, [(i, items.dumps({"i": i}), None) for i in range(n_items)]
        )
    return run.id


async def _stored(engine: sa_async.AsyncEngine, run_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(tables.raw_apify_items)
            .where(tables.raw_apify_items.c.apify_run_id == run_id)
        )
    return int(count or 0)


async def _past_days(engine: sa_async.AsyncEngine, *days_ago: int) -> None:
    today = await _today(engine)
    async with engine.begin() as conn:
        for n in days_ago:
            await raw_partitions.create_day(conn, today - dt.timedelta(days=n))


async def _horizon(engine: sa_async.AsyncEngine) -> dt.datetime | None:
    async with engine.connect() as conn:
        value = await conn.scalar(sa.select(tables.raw_item_retention.c.dropped_before))
    assert value is None or isinstance(value, dt.datetime)
    return value


async def test_upkeep_creates_the_missing_days_ahead_and_says_how_far_they_reach(
    engine: sa_async.AsyncEngine,
) -> None:
    today = await _today(engine)
    gone = [raw_partitions.daily_name(today + dt.timedelta(days=n)) for n in (5, 6, 7)]
    async with engine.begin() as conn:
        for name in gone:
            await conn.execute(sa.text(f"DROP TABLE {name}"))

    done = await raw_partitions.maintain(engine, retention=None)

    assert sorted(done.created) == sorted(gone)
    assert set(gone) <= await _partitions(engine)
    assert done.dropped == ()
    assert done.ahead_seconds is not None
    assert 7 * 86_400 < done.ahead_seconds <= 8 * 86_400
    again = await raw_partitions.maintain(engine, retention=None)
    assert again.created == ()


async def test_items_of_a_run_go_to_the_partition_of_its_day(engine: sa_async.AsyncEngine) -> None:
    await _past_days(engine, 3)
    run_id = await _run_filed(engine, 3, 4)
    day = (await _today(engine)) - dt.timedelta(days=3)
    async with engine.connect() as conn:
        in_day = await conn.scalar(
            sa.text(
                f"SELECT count(*) FROM {raw_partitions.daily_name(day)} WHERE apify_run_id = :r"
            ),
            {"r": run_id},
        )
    assert in_day == 4


async def test_retention_drops_whole_days_past_it_and_keeps_every_item_inside_the_window(
    engine: sa_async.AsyncEngine,
) -> None:
    await _past_days(engine, 10, 6, 5, 4, 1)
    old = [await _run_filed(engine, n, 5) for n in (10, 6)]
    kept = [await _run_filed(engine, n, 5) for n in (5, 4, 1, 0)]
    today = await _today(engine)

    done = await raw_partitions.maintain(engine, retention=dt.timedelta(days=5))

    # A day goes once its last instant is 5 days old: days -10 and -6. Day -5 ends at
    # midnight of day -4, less than 5 days ago: its items (filed 5 days and some hours
    # ago) stay until it has passed.
    assert sorted(done.dropped) == sorted(
        raw_partitions.daily_name(today - dt.timedelta(days=n)) for n in (10, 6)
    )
    assert [await _stored(engine, r) for r in old] == [0, 0]
    assert [await _stored(engine, r) for r in kept] == [5, 5, 5, 5]
    assert await _horizon(engine) == dt.datetime.combine(
        today - dt.timedelta(days=5), dt.time(), tzinfo=UTC
    )
    assert raw_partitions.LEGACY in await _partitions(engine)  # converted just now


async def test_without_a_retention_nothing_is_dropped(engine: sa_async.AsyncEngine) -> None:
    await _past_days(engine, 400)
    run_id = await _run_filed(engine, 400, 3)
    done = await raw_partitions.maintain(engine, retention=None)
    assert done.dropped == ()
    assert await _stored(engine, run_id) == 3
    assert await _horizon(engine) is None


async def test_the_legacy_partition_goes_once_its_conversion_is_past_the_retention(
    engine: sa_async.AsyncEngine,
) -> None:
    legacy_run = await _run_filed(engine, None, 3)
    assert await _stored(engine, legacy_run) == 3
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(tables.raw_item_retention).values(
                converted_at=sa.func.now() - dt.timedelta(days=6, hours=1)
            )
        )
    # Converted 6 days and 1 hour ago, plus a day's margin for older releases: 5 days and
    # 1 hour old, so a retention of 5 days and 2 hours keeps it and one of 5 days drops it.
    kept = await raw_partitions.maintain(engine, retention=dt.timedelta(days=5, hours=2))
    assert raw_partitions.LEGACY not in kept.dropped
    assert await _stored(engine, legacy_run) == 3

    done = await raw_partitions.maintain(engine, retention=dt.timedelta(days=5))

    assert raw_partitions.LEGACY in done.dropped
    assert raw_partitions.LEGACY not in await _partitions(engine)
    assert await _stored(engine, legacy_run) == 0
    horizon = await _horizon(engine)
    assert horizon is not None
    assert horizon >= raw_partitions.LEGACY_UNTIL
    async with engine.connect() as conn:
        assert await raw_partitions.raw_items_kept(conn, legacy_run) is False


async def test_a_round_runs_in_one_process_at_a_time(engine: sa_async.AsyncEngine) -> None:
    async with engine.connect() as holder:
        await holder.execute(
            sa.text("SELECT pg_advisory_lock(:k)"), {"k": raw_partitions.ADVISORY_LOCK_KEY}
        )
        try:
            busy = await raw_partitions.maintain(engine, retention=dt.timedelta(days=1))
        finally:
            await holder.execute(
                sa.text("SELECT pg_advisory_unlock(:k)"), {"k": raw_partitions.ADVISORY_LOCK_KEY}
            )
    assert busy.skipped
    assert not (await raw_partitions.maintain(engine, retention=None)).skipped


async def test_kept_raw_items_are_told_apart_from_dropped_ones(
    engine: sa_async.AsyncEngine,
) -> None:
    await _past_days(engine, 9)
    gone, here = await _run_filed(engine, 9, 2), await _run_filed(engine, 0, 2)
    await raw_partitions.maintain(engine, retention=dt.timedelta(days=3))
    async with engine.connect() as conn:
        assert await raw_partitions.raw_items_kept(conn, gone) is False
        assert await raw_partitions.raw_items_kept(conn, here) is True
