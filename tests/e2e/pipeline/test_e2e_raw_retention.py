"""End to end through the real CLI: raw items kept by day with KAIRO_RAW_RETENTION_DAYS.

Three brands are ingested by ``kairo-ingest run --drain`` against the simulator; their
runs (and the runs' raw items) are then filed 10, 3 and 0 days back, a legacy run sits in
the pre-partitioning partition, and the last days ahead are missing. A worker started
with a retention of 5 days then, by its own maintenance: drops the 10-day-old day and the
legacy partition, keeps every raw item of the other runs, recreates the days ahead, and
leaves the evidence alone. A brand whose dropped run was never normalized is refreshed on
its next job, never renormalized from nothing.
"""

from __future__ import annotations

import datetime as dt
import pathlib
import signal
import uuid
from typing import Any

import pipeline_e2e_kit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import raw_partitions

SIM_CONFIG: dict[str, Any] = {
    "seed": 11,
    "time_factor": 0.01,
    "outcome_weights": {"SUCCEEDED": 1.0},
}


_DAYS = "make_interval(days => CAST(:d AS integer))"


async def _scalar(engine: sa_async.AsyncEngine, query: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text(query), params)).scalar()


async def _brand(processes: kit.Processes, env: dict[str, str], handle: str) -> uuid.UUID:
    brand = uuid.uuid4()
    await processes.cli(
        env,
        "sources",
        "add",
        "--brand",
        str(brand),
        "--platform",
        "tiktok",
        "--capability",
        "profile_videos",
        "--identifier",
        f"@{handle}",
    )
    await processes.cli(env, "enqueue", "--brand", str(brand))
    return brand


async def _drain(processes: kit.Processes, env: dict[str, str], name: str) -> None:
    proc = await processes.spawn([*kit.kairo_command(), "run", "--drain"], env, log_name=name)
    assert await processes.exit_code(proc, kit.BOUND_SECONDS) == 0, processes.log_tail(proc)


async def _file_back(engine: sa_async.AsyncEngine, brand: uuid.UUID, days: int) -> None:
    """File the brand's runs and their raw items ``days`` back (rows move partitions)."""
    async with engine.begin() as conn:
        today = (await conn.scalar(sa.text("SELECT now()"))).astimezone(dt.UTC).date()
        await raw_partitions.create_day(conn, today - dt.timedelta(days=days))
        back = {"b": brand, "d": days}
        await conn.execute(
            sa.text(
                f"UPDATE raw_apify_items SET raw_partition_at = raw_partition_at - {_DAYS}"
                " WHERE apify_run_id IN (SELECT id FROM apify_runs WHERE brand_id = :b)"
            ),
            back,
        )
        await conn.execute(
            sa.text(
                f"UPDATE apify_runs SET raw_partition_at = raw_partition_at - {_DAYS},"
                " normalized_at = NULL WHERE brand_id = :b"
            ),
            back,
        )


async def _raw_items(engine: sa_async.AsyncEngine, brand: uuid.UUID) -> int:
    return int(
        await _scalar(
            engine,
            "SELECT count(*) FROM raw_apify_items i JOIN apify_runs r ON r.id = i.apify_run_id"
            " WHERE r.brand_id = :b",
            b=brand,
        )
    )


async def _raw_item_counts(engine: sa_async.AsyncEngine, brand: uuid.UUID) -> int:
    return int(
        await _scalar(
            engine, "SELECT sum(raw_item_count) FROM apify_runs WHERE brand_id = :b", b=brand
        )
    )


async def test_retention_drops_old_days_keeps_the_window_and_makes_days_ahead(
    engine: sa_async.AsyncEngine,
    db_url: str,
    processes: kit.Processes,
    simulator: kit.Simulator,
    tmp_path: pathlib.Path,
) -> None:
    await simulator.configure(SIM_CONFIG)
    env = kit.cli_env(db_url=db_url, apify_url=simulator.base_url, data_dir=tmp_path)
    old, recent, fresh = [await _brand(processes, env, h) for h in ("old", "recent", "fresh")]
    await _drain(processes, env, "ingest")
    assert all([await _raw_items(engine, b) > 0 for b in (old, recent, fresh)])
    await _file_back(engine, old, 10)
    await _file_back(engine, recent, 3)
    async with engine.begin() as conn:
        # A run from before partitioning: its items sit in the legacy partition.
        await conn.execute(
            sa.text(
                "INSERT INTO raw_apify_items (apify_run_id, item_index, raw_json)"
                " SELECT id, 1000, '{}'::jsonb FROM apify_runs WHERE brand_id = :b"
            ),
            {"b": fresh},
        )
        await conn.execute(
            sa.text("UPDATE raw_item_retention SET converted_at = now() - interval '30 days'")
        )
        today = (await conn.scalar(sa.text("SELECT now()"))).astimezone(dt.UTC).date()
        ahead = [raw_partitions.daily_name(today + dt.timedelta(days=n)) for n in (6, 7)]
        for name in ahead:
            await conn.execute(sa.text(f"DROP TABLE {name}"))
    evidence = await _scalar(engine, "SELECT count(*) FROM normalized_evidence_items")
    kept = {b: await _raw_item_counts(engine, b) for b in (recent, fresh)}

    worker = await processes.spawn(
        [*kit.kairo_command(), "run"],
        {**env, "KAIRO_RAW_RETENTION_DAYS": "5"},
        log_name="worker-retention",
    )

    async def maintained() -> bool:
        assert worker.returncode is None, processes.log_tail(worker)
        return bool(
            await _scalar(
                engine,
                "SELECT to_regclass(:old) IS NULL AND to_regclass('raw_apify_items_legacy') IS NULL"
                " AND to_regclass(:ahead) IS NOT NULL",
                old=raw_partitions.daily_name(today - dt.timedelta(days=10)),
                ahead=ahead[-1],
            )
        )

    await kit.wait_until(maintained, what="the worker's partition upkeep")
    worker.send_signal(signal.SIGTERM)
    assert await processes.exit_code(worker, kit.BOUND_SECONDS) == 0

    assert await _raw_items(engine, old) == 0
    # Inside the window nothing is lost: every item the runs counted is still there (the
    # legacy row of `fresh` went with the legacy partition).
    assert {b: await _raw_items(engine, b) for b in (recent, fresh)} == kept
    assert await _scalar(engine, "SELECT count(*) FROM normalized_evidence_items") == evidence
    for name in ahead:
        assert await _scalar(engine, "SELECT to_regclass(:n) IS NOT NULL", n=name)

    # The old brand's run was stored but (as filed back) never normalized, and its raw
    # items are gone: its next job starts a new Apify run instead of reusing it.
    starts = (await simulator.stats())["starts"]
    await processes.cli(env, "enqueue", "--brand", str(old))
    await _drain(processes, env, "after-retention")
    assert (await simulator.stats())["starts"] == starts + 1
    assert await _raw_items(engine, old) > 0
