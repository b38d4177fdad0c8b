"""Writing dataset pages: raw items, their normalization and the run's counts, together.

One page is one transaction that first checks the lease (fencing), then inserts the
raw items, upserts the evidence they normalize to and adds the counts. Raw items and
their evidence therefore commit or roll back together, and a re-fetch after a crash
only writes the pages that did not commit.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, metrics
from kairo_ingest.db import items, runs
from kairo_ingest.domain import normalize
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)

UNSTORABLE = "invalid_field:raw_json"


@dataclasses.dataclass(frozen=True, slots=True)
class Counts:
    raw: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.raw + other.raw,
            self.created + other.created,
            self.updated + other.updated,
            self.skipped + other.skipped,
        )


def _normalize(
    platform: str, capability: str, raw: Any
) -> normalize.NormalizedItem | normalize.Skip:
    try:
        return normalize.normalize(platform, capability, raw)
    except (
        Exception
    ):  # normalizers are property-tested never to raise; a poison item never stops a page
        log.exception("normalizer_raised", platform=platform, capability=capability)
        return normalize.Skip("invalid_field:item")


def _evidence_row(
    item: normalize.NormalizedItem, run_id: uuid.UUID, raw_id: int
) -> items.EvidenceRow:
    return items.EvidenceRow(item, [{"apify_run_id": str(run_id), "raw_item_id": raw_id}])


async def _write_page(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    run: runs.Run,
    platform: str,
    results: Sequence[tuple[int, str, normalize.NormalizedItem | normalize.Skip]],
) -> Counts:
    async with engine.begin() as conn:
        await queue_jobs.fence(conn, lease)
        new_ids = await items.insert_raw(
            conn,
            run.id,
            [
                (index, doc, result.reason if isinstance(result, normalize.Skip) else None)
                for index, doc, result in results
            ],
        )
        rows = [
            _evidence_row(result, run.id, new_ids[index])
            for index, _, result in results
            if index in new_ids and isinstance(result, normalize.NormalizedItem)
        ]
        skipped = sum(
            1 for index, _, r in results if index in new_ids and isinstance(r, normalize.Skip)
        )
        created, updated = await items.upsert_evidence(conn, run.brand_id, rows)
        counts = Counts(len(new_ids), created, updated, skipped)
        await runs.add_counts(
            conn, run.id, raw=counts.raw, created=created, updated=updated, skipped=skipped
        )
    return counts


async def store_page(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    run: runs.Run,
    *,
    platform: str,
    capability: str,
    page: Sequence[tuple[int, Any]],
) -> Counts:
    """Store one page of ``(item_index, raw_item)``; items already stored are left alone.

    A page the database refuses (a value jsonb cannot hold) is split in halves until
    the poison item is alone; that item is stored as a placeholder with a skip reason,
    so nothing else is lost and the run goes on.
    """
    results = [
        (index, items.dumps(raw), _normalize(platform, capability, raw)) for index, raw in page
    ]
    counts = await _store_results(engine, lease, run, platform, results)
    metrics.ITEMS.labels(platform, "stored").inc(counts.raw)
    metrics.ITEMS.labels(platform, "created").inc(counts.created)
    metrics.ITEMS.labels(platform, "updated").inc(counts.updated)
    metrics.ITEMS.labels(platform, "skipped").inc(counts.skipped)
    return counts


async def _store_results(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    run: runs.Run,
    platform: str,
    results: Sequence[tuple[int, str, normalize.NormalizedItem | normalize.Skip]],
) -> Counts:
    try:
        return await _write_page(engine, lease, run, platform, results)
    except errors.DatabaseError as exc:
        if not _is_data_error(exc):
            raise
        if len(results) > 1:
            middle = len(results) // 2
            return await _store_results(engine, lease, run, platform, results[:middle]) + (
                await _store_results(engine, lease, run, platform, results[middle:])
            )
        index, doc, _ = results[0]
        log.warning("raw_item_unstorable", item_index=index, error=exc.message[:200])
        placeholder = items.dumps({"_kairo_unstorable": doc[:10_000]})
        return await _write_page(
            engine, lease, run, platform, [(index, placeholder, normalize.Skip(UNSTORABLE))]
        )


def _is_data_error(exc: errors.DatabaseError) -> bool:
    """Data exceptions (SQLSTATE class 22): a value the column cannot hold."""
    return exc.sqlstate is not None and exc.sqlstate.startswith("22")


async def renormalize(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    run: runs.Run,
    *,
    platform: str,
    capability: str,
    cap: int,
    batch_size: int = 1000,
) -> Counts:
    """Normalize a stored run's raw items again (a reused run never normalized), in batches.

    Only the first ``cap`` items by index count, as on fetch.
    """
    total = Counts()
    after = 0
    while True:
        async with engine.connect() as conn:
            batch = await items.read_raw(conn, run.id, after=after, cap=cap, limit=batch_size)
        if not batch:
            break
        after = batch[-1].item_index + 1
        results = [(r, _normalize(platform, capability, r.raw_json)) for r in batch]
        rows = [
            _evidence_row(res, run.id, r.id)
            for r, res in results
            if isinstance(res, normalize.NormalizedItem)
        ]
        async with engine.begin() as conn:
            await queue_jobs.fence(conn, lease)
            await items.set_skip_reasons(
                conn,
                [
                    (r.id, res.reason if isinstance(res, normalize.Skip) else None)
                    for r, res in results
                ],
            )
            created, updated = await items.upsert_evidence(conn, run.brand_id, rows)
        skipped = sum(1 for _, res in results if isinstance(res, normalize.Skip))
        total = total + Counts(0, created, updated, skipped)
    async with engine.begin() as conn:
        await queue_jobs.fence(conn, lease)
        await runs.update(
            conn,
            run.id,
            normalized_at=sa.func.now(),
            normalized_item_count=total.created + total.updated,
            items_skipped=total.skipped,
        )
    return total
