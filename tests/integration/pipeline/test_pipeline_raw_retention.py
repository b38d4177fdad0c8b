"""A run whose raw items retention dropped is never renormalized from nothing: the compile
job refreshes its source instead, while a run already normalized is still reused (its
evidence is kept), and a renormalization that loses its raw items midway is not recorded."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from pipeline_kit import Kit

from kairo_ingest import errors
from kairo_ingest.db import raw_partitions, runs, tables
from kairo_ingest.pipeline import compile_job, store
from kairo_ingest.queue import endings
from support import outcomes

TIKTOK = [("tiktok", "profile_videos", "@acme")]
R = tables.apify_runs
RETENTION = dt.timedelta(days=5)


async def _ingest_and_file_back(kit: Kit, *, days: int, normalized: bool) -> int:
    """Compile once, then file the run (and its raw items) ``days`` back; returns the
    evidence count. Unless ``normalized``, the run reads as stored but never normalized."""
    brand, _ = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    await compile_job.run(kit.deps(), lease)
    await endings.complete(kit.engine, lease)
    async with kit.engine.begin() as conn:
        today = (await conn.scalar(sa.select(sa.func.now()))).astimezone(dt.UTC).date()
        await raw_partitions.create_day(conn, today - dt.timedelta(days=days))
        back = dt.timedelta(days=days)
        await conn.execute(sa.update(R).values(raw_partition_at=R.c.raw_partition_at - back))
        items_table = tables.raw_apify_items
        await conn.execute(
            sa.update(items_table).values(raw_partition_at=items_table.c.raw_partition_at - back)
        )
        if not normalized:
            await conn.execute(sa.update(R).values(normalized_at=None))
    return await kit.count(tables.normalized_evidence_items)


async def test_a_never_normalized_run_whose_raw_items_were_dropped_is_refreshed(
    kit: Kit,
) -> None:
    await _ingest_and_file_back(kit, days=10, normalized=False)
    done = await raw_partitions.maintain(kit.engine, retention=RETENTION)
    assert len(done.dropped) == 1
    assert await kit.count(tables.raw_apify_items) == 0

    brand = outcomes.only({r.brand_id for r in await kit.rows(R)})
    again = await compile_job.run(kit.deps(), await kit.lease(brand))

    entry = outcomes.only(again.evidence_status["refreshed"])
    assert entry["raw_items"] > 0
    assert again.evidence_status["reused"] == []
    assert kit.sim.stats()["starts"] == 2


async def test_a_normalized_run_whose_raw_items_were_dropped_is_still_reused(kit: Kit) -> None:
    evidence = await _ingest_and_file_back(kit, days=10, normalized=True)
    await raw_partitions.maintain(kit.engine, retention=RETENTION)
    assert await kit.count(tables.raw_apify_items) == 0

    brand = outcomes.only({r.brand_id for r in await kit.rows(R)})
    again = await compile_job.run(kit.deps(), await kit.lease(brand))

    assert [e["reason"] for e in again.evidence_status["reused"]] == ["fresh_run_within_ttl"]
    assert await kit.count(tables.normalized_evidence_items) == evidence
    assert kit.sim.stats()["starts"] == 1


async def test_a_renormalization_that_lost_its_raw_items_is_not_recorded(kit: Kit) -> None:
    """The drop lands after the job opened (so the run was offered for reuse): whatever was
    read is not the run's items, and the run stays un-normalized."""
    await _ingest_and_file_back(kit, days=10, normalized=False)
    row = outcomes.only(await kit.rows(R))
    run = runs.Run(**{f: getattr(row, f) for f in runs.Run.__dataclass_fields__})
    lease = await kit.lease(row.brand_id)
    await raw_partitions.maintain(kit.engine, retention=RETENTION)

    with pytest.raises(errors.HandlerError, match="dropped by retention"):
        await store.renormalize(
            kit.engine, lease, run, platform="tiktok", capability="profile_videos", cap=10
        )

    after = outcomes.only(await kit.rows(R))
    assert after.normalized_at is None
