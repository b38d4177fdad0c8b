"""One function records a run's end (runs.record_end): idempotent, the first end wins, and an
ended row never goes back to a running status."""

from __future__ import annotations

import decimal
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import runs, sources, tables


async def _run(engine: sa_async.AsyncEngine) -> runs.Run:
    brand = uuid.uuid4()
    source, _ = await sources.add(
        engine, brand_id=brand, platform="tiktok", capability="profile_videos", identifier="@a"
    )
    async with engine.begin() as conn:
        run = await runs.create_intent(
            conn,
            job_id=None,  # type: ignore[arg-type]
            source_id=source.id,
            brand_id=brand,
            actor_id="clockworks~tiktok-scraper",
            run_input={"profiles": ["a"]},
            item_cap=10,
            attempt=1,
        )
        return await runs.update(conn, run.id, apify_run_id="r1", status="RUNNING")


END = runs.End(
    status="ABORTED",
    ended_by="ledger",
    usage_total_usd=0.0123,
    usage={"ACTOR_COMPUTE_UNITS": 0.01},
    max_total_charge_usd=0.05,
    charged_event_counts={"result": 3},
    partial_reason="aborted",
    aborted=True,
)


async def test_an_end_is_written_once_and_the_first_one_wins(engine: sa_async.AsyncEngine) -> None:
    run = await _run(engine)
    async with engine.begin() as conn:
        ended, wrote = await runs.record_end(conn, run.id, END)
    assert wrote
    assert (ended.status, ended.partial_reason, ended.ended_by) == ("ABORTED", "aborted", "ledger")
    assert ended.finished_at is not None
    assert ended.usage_total_usd == decimal.Decimal("0.012300")
    assert ended.charged_event_counts == {"result": 3}
    assert ended.abort_requested_at is not None

    later = runs.End(status="SUCCEEDED", ended_by="job", usage_total_usd=9.0)
    async with engine.begin() as conn:
        again, wrote_again = await runs.record_end(conn, run.id, later)
    assert not wrote_again
    assert again == ended


async def test_an_ended_row_never_goes_back_to_running(engine: sa_async.AsyncEngine) -> None:
    run = await _run(engine)
    async with engine.begin() as conn:
        await runs.record_end(conn, run.id, END)
        _, wrote = await runs.record_end(conn, run.id, runs.End(status="RUNNING", ended_by="job"))
        status = await conn.scalar(
            sa.select(tables.apify_runs.c.status).where(tables.apify_runs.c.id == run.id)
        )
    assert not wrote
    assert status == "ABORTED"
