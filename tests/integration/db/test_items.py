from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import items, runs, tables
from kairo_ingest.domain import normalize, registry, statuses
from support import outcomes

UTC = dt.UTC


async def _run(engine: sa_async.AsyncEngine) -> tuple[uuid.UUID, uuid.UUID]:
    brand = uuid.uuid4()
    async with engine.begin() as conn:
        src = (
            await conn.execute(
                sa.insert(tables.source_connections)
                .values(
                    brand_id=brand,
                    platform="tiktok",
                    capability="profile_videos",
                    identifier="acme",
                )
                .returning(tables.source_connections.c.id)
            )
        ).scalar_one()
        run = await runs.create_intent(
            conn,
            job_id=None,
            source_id=src,
            brand_id=brand,
            actor_id="a~b",
            run_input={"profiles": ["acme"]},
            item_cap=10,
            attempt=1,
        )
    return brand, run.id


def _row(
    ext: str,
    *,
    title: str | None = None,
    run: str = "r1",
    raw_id: int = 1,
    published: dt.datetime | None = None,
    platform: str = "tiktok",
    url: str | None = None,
) -> items.EvidenceRow:
    web = platform == "web"
    item = normalize.NormalizedItem(
        platform=statuses.Platform(platform),
        content_type=registry.ContentType.WEB_PAGE if web else registry.ContentType.SHORT_VIDEO,
        external_id=None if web else ext,
        canonical_url=url or f"https://www.tiktok.com/@acme/video/{ext}",
        published_at=published,
        author_ref="acme",
        title=title,
        text_primary="t",
        text_secondary=None,
        hashtags=("a",),
        metrics={"plays": 1},
        media={},
        flags={},
    )
    return items.EvidenceRow(item, [{"apify_run_id": run, "raw_item_id": raw_id}])


async def test_raw_insert_is_idempotent_and_drops_nul(engine: sa_async.AsyncEngine) -> None:
    _brand, run_id = await _run(engine)
    batch = [(0, items.dumps({"a": "x\u0000y"}), None), (1, items.dumps({"b": 1}), "error_item")]
    async with engine.begin() as conn:
        first = await items.insert_raw(conn, run_id, batch)
    async with engine.begin() as conn:
        again = await items.insert_raw(conn, run_id, batch)
        stored = await items.read_raw(conn, run_id, after=0, cap=10, limit=10)
    assert sorted(first) == [0, 1]
    assert again == {}
    assert [r.raw_json for r in stored] == [{"a": "xy"}, {"b": 1}]


async def test_upsert_counts_created_and_updated_and_keeps_old_values(
    engine: sa_async.AsyncEngine,
) -> None:
    brand, _ = await _run(engine)
    when = dt.datetime(2026, 1, 7, 15, 26, 46, tzinfo=UTC)
    async with engine.begin() as conn:
        assert await items.upsert_evidence(
            conn, brand, [_row("1", title="T", published=when), _row("2")]
        ) == (2, 0)
    async with engine.begin() as conn:
        # Same keys again, from another run: updated, refs merged, empty values kept.
        assert await items.upsert_evidence(
            conn, brand, [_row("1", run="r2", raw_id=9), _row("1", run="r2", raw_id=9)]
        ) == (0, 2)
        row = (
            await conn.execute(
                sa.select(tables.normalized_evidence_items).where(
                    tables.normalized_evidence_items.c.external_id == "1"
                )
            )
        ).one()
    assert row.title == "T"
    assert row.published_at == when
    assert row.raw_refs == [
        {"apify_run_id": "r1", "raw_item_id": 1},
        {"apify_run_id": "r2", "raw_item_id": 9},
    ]


async def test_concurrent_upserts_of_overlapping_items_leave_no_duplicates(
    engine: sa_async.AsyncEngine,
) -> None:
    brand, _ = await _run(engine)

    async def one(worker: int) -> None:
        rows = [_row(str(i), run=f"w{worker}", raw_id=i) for i in range(200)]
        if worker % 2:
            rows.reverse()
        async with engine.begin() as conn:
            await items.upsert_evidence(conn, brand, rows)

    await asyncio.gather(*(one(w) for w in range(6)))
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).select_from(tables.normalized_evidence_items)
        )
        refs = await conn.scalar(
            sa.select(
                sa.func.jsonb_array_length(tables.normalized_evidence_items.c.raw_refs)
            ).where(tables.normalized_evidence_items.c.external_id == "7")
        )
    assert count == 200
    assert refs == 6


async def test_an_upsert_racing_an_uncommitted_insert_of_the_same_items_updates_them(
    engine: sa_async.AsyncEngine,
) -> None:
    """Select-then-insert: a writer whose SELECT cannot see another's uncommitted rows
    inserts them too and fails on the unique index. The upsert waits for the other
    transaction and then updates: deterministic, B is seen blocked before A commits."""
    brand, _ = await _run(engine)
    rows_a = [_row(str(i), run="a", raw_id=i) for i in range(20)]
    rows_b = [_row(str(i), run="b", raw_id=100 + i) for i in range(20)]

    async def writer_b() -> tuple[int, int]:
        async with engine.begin() as conn:
            return await items.upsert_evidence(conn, brand, rows_b)

    async def b_waits_on_a_lock() -> bool:
        async with engine.connect() as conn:
            waiting = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            )
        return bool(waiting)

    async with engine.connect() as a:
        await a.begin()
        assert await items.upsert_evidence(a, brand, rows_a) == (20, 0)
        racing = asyncio.create_task(writer_b())
        async with asyncio.timeout(15):  # a bound only: B blocks at once on A's index entries
            while not await b_waits_on_a_lock():
                assert not racing.done(), "B finished before A committed"
                await asyncio.sleep(0.02)
        await a.commit()

    assert await outcomes.value_of(racing) == (0, 20)
    async with engine.connect() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).select_from(tables.normalized_evidence_items)
        )
        refs = await conn.scalar(
            sa.select(
                sa.func.jsonb_array_length(tables.normalized_evidence_items.c.raw_refs)
            ).where(tables.normalized_evidence_items.c.external_id == "7")
        )
    assert count == 20
    assert refs == 2


async def test_web_items_with_different_urls_are_not_merged(engine: sa_async.AsyncEngine) -> None:
    brand, _ = await _run(engine)
    async with engine.begin() as conn:
        created, updated = await items.upsert_evidence(
            conn,
            brand,
            [
                _row("", platform="web", url="https://a.example/1"),
                _row("", platform="web", url="https://a.example/2"),
            ],
        )
    assert (created, updated) == (2, 0)
