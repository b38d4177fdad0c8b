"""Writing dataset pages: raw items, their normalization and the run's counts, together.

A page is written in batches of at most :data:`WRITE_BATCH_ITEMS`; each batch is one
transaction that first checks the lease (fencing), then inserts the raw items, upserts
the evidence they normalize to and adds the counts. Raw items and their evidence
therefore commit or roll back together, and a re-fetch after a crash only writes what
did not commit (raw items ``ON CONFLICT DO NOTHING``; evidence and counts only for the
raw items that were new).

The event loop and the fence stay free while a page is prepared (a thread, not smaller
steps: with 7 sources ready at once, steps of every source run back to back in one loop
iteration, so the lag is their sum; one thread bounds it by the GIL's switch interval):

* Encoding and normalizing a page (pure CPU: 0.5-1.7 s for big pages when it ran
  inline) runs in the pipeline's one CPU thread (:mod:`kairo_ingest.pipeline.offload`
  says why a thread, and why one), so heartbeats and other sources' I/O go on. The
  evidence's JSON columns are encoded there as well.
* It runs *before* the fenced transaction opens, so the transaction (which holds the
  job row ``FOR KEY SHARE`` for a takeover to wait on) holds only the inserts, and the
  one step that needs the new raw ids (merging the page's duplicates and laying out the
  upsert) goes to the thread too.
* JSON goes to the driver as text (``db.items``), so no per-value codec runs on the loop.
* Batches of 250, not the page of 1,000 Apify pages come in: the driver encodes a
  statement's parameters on the loop, in one step, so that step grows with the batch;
  and the fence is held for one short batch at a time. Measured with the bench below
  on a loaded 2-core machine: loop lag p99 57-86 ms with batches of 250 against
  117-171 ms with batches of 1,000, at the same throughput.

``bench/loop_lag.py`` measures it: 7 sources x 3,000 items stored concurrently
(docs/benchmarks.md). Poison items and skip reasons: docs/apify-runs.md.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, metrics, tracing
from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import items, raw_partitions, runs
from kairo_ingest.domain import normalize
from kairo_ingest.pipeline import offload, tx
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)

UNPARSABLE_PREFIX = "unparsable:"
"""Skip reason prefix of an item the Apify client could not decode (``unparsable:too_deep``)."""
UNSTORABLE_PREFIX = "unstorable:"
"""Skip reason prefix of an item that cannot be stored as it is (``unstorable:invalid_json``)."""
UNSTORABLE = UNSTORABLE_PREFIX + "refused"
"""Skip reason of an item the database refused; its placeholder keeps an excerpt."""

WRITE_BATCH_ITEMS = 250
"""Items per write transaction (see the module docstring)."""

Result = normalize.NormalizedItem | normalize.Skip


@dataclasses.dataclass(frozen=True, slots=True)
class Prepared:
    """One item ready to write: its raw jsonb text, its normalization and, for evidence,
    its JSON columns already encoded (all CPU work done before the transaction)."""

    index: int
    doc: str
    result: Result
    columns: items.JsonColumns | None = None

    @property
    def skip_reason(self) -> str | None:
        return self.result.reason if isinstance(self.result, normalize.Skip) else None


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


def _prepare_one(platform: str, capability: str, index: int, raw: Any) -> Prepared:
    """Encode and normalize one item; never raises, whatever the item is."""
    if isinstance(raw, apify_models.UnparsableItem):
        return Prepared(
            index,
            items.placeholder(raw.reason, raw.excerpt),
            normalize.Skip(UNPARSABLE_PREFIX + raw.reason),
        )
    try:
        doc = items.encode_raw(raw)
    except items.Unencodable as exc:
        log.warning("raw_item_unencodable", item_index=index, reason=exc.reason)
        return Prepared(
            index,
            items.placeholder(exc.reason, exc.excerpt),
            normalize.Skip(UNSTORABLE_PREFIX + exc.reason),
        )
    result = _normalize(platform, capability, raw)
    if isinstance(result, normalize.Skip):
        return Prepared(index, doc, result)
    return Prepared(index, doc, result, items.json_columns(result))


def prepare(platform: str, capability: str, page: Sequence[tuple[int, Any]]) -> list[Prepared]:
    """Encode and normalize a page (CPU only, no I/O)."""
    return [_prepare_one(platform, capability, index, raw) for index, raw in page]


def _evidence_row(
    item: normalize.NormalizedItem,
    run_id: uuid.UUID,
    raw_id: int,
    columns: items.JsonColumns | None = None,
) -> items.EvidenceRow:
    return items.EvidenceRow(item, [{"apify_run_id": str(run_id), "raw_item_id": raw_id}], columns)


def _evidence_batch(
    run: runs.Run, results: Sequence[Prepared], new_ids: dict[int, int]
) -> items.EvidenceBatch:
    rows = [
        _evidence_row(p.result, run.id, new_ids[p.index], p.columns)
        for p in results
        if p.index in new_ids and isinstance(p.result, normalize.NormalizedItem)
    ]
    return items.evidence_batch(run.brand_id, rows)


async def _write_page(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    run: runs.Run,
    results: Sequence[Prepared],
    policy: tx.Policy,
) -> Counts:
    async def unit(conn: sa_async.AsyncConnection) -> Counts:
        new_ids = await items.insert_raw(
            conn, run.id, [(p.index, p.doc, p.skip_reason) for p in results]
        )
        # Merging and laying out the evidence is CPU work too: off the loop as well.
        batch = await offload.run(_evidence_batch, run, results, new_ids)
        skipped = sum(
            1 for p in results if p.index in new_ids and isinstance(p.result, normalize.Skip)
        )
        created, updated = await items.upsert_evidence(conn, run.brand_id, batch)
        counts = Counts(len(new_ids), created, updated, skipped)
        await runs.add_counts(
            conn, run.id, raw=counts.raw, created=created, updated=updated, skipped=skipped
        )
        return counts

    return await tx.write(engine, lease, unit, policy=policy, operation="store_page")


async def store_page(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    run: runs.Run,
    *,
    platform: str,
    capability: str,
    page: Sequence[tuple[int, Any]],
    policy: tx.Policy = tx.DEFAULT,
) -> Counts:
    """Store one page of ``(item_index, raw_item)``; items already stored are left alone.

    ``raw_item`` is any JSON value, or an :class:`~kairo_ingest.apify.models.UnparsableItem`.
    Nothing in one item costs the rest of its page:

    * a non-object is stored as that JSON value, skipped as ``invalid_field:item``;
    * an :class:`UnparsableItem` is stored as a placeholder
      ``{"kairo_unstorable": reason, "excerpt": ...}``, skipped as ``unparsable:<reason>``;
    * a value that cannot be encoded (nested past the encoder's limit, NaN) becomes a
      placeholder, skipped as ``unstorable:too_deep`` / ``unstorable:invalid_json``;
    * a page the database refuses (:class:`errors.DatabaseValueError`) is split in halves
      until the poison item is alone; it becomes a placeholder, skipped as ``unstorable:refused``.
    """
    with tracing.span(
        "page write",
        {
            "kairo.run.id": str(run.id),
            "apify.run_id": run.apify_run_id,
            "kairo.page.items": len(page),
            "kairo.page.first_index": page[0][0] if page else None,
        },
    ) as page_span:
        # Off the loop, and before the fenced transaction opens (see the module docstring).
        results = await offload.run(prepare, platform, capability, page)
        counts = Counts()
        for start in range(0, len(results), WRITE_BATCH_ITEMS):
            batch = results[start : start + WRITE_BATCH_ITEMS]
            counts = counts + await _store_results(engine, lease, run, batch, policy)
        tracing.annotate(
            page_span,
            {
                "kairo.page.raw": counts.raw,
                "kairo.page.created": counts.created,
                "kairo.page.updated": counts.updated,
                "kairo.page.skipped": counts.skipped,
            },
        )
    metrics.ITEMS.labels(platform, "stored").inc(counts.raw)
    metrics.ITEMS.labels(platform, "created").inc(counts.created)
    metrics.ITEMS.labels(platform, "updated").inc(counts.updated)
    metrics.ITEMS.labels(platform, "skipped").inc(counts.skipped)
    return counts


async def _store_results(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    run: runs.Run,
    results: Sequence[Prepared],
    policy: tx.Policy,
) -> Counts:
    try:
        return await _write_page(engine, lease, run, results, policy)
    except errors.DatabaseValueError as exc:
        if len(results) > 1:
            middle = len(results) // 2
            return await _store_results(engine, lease, run, results[:middle], policy) + (
                await _store_results(engine, lease, run, results[middle:], policy)
            )
        poison = results[0]
        log.warning("raw_item_unstorable", item_index=poison.index, sqlstate=exc.sqlstate)
        placeholder = Prepared(
            poison.index, items.placeholder("refused", poison.doc), normalize.Skip(UNSTORABLE)
        )
        return await _write_page(engine, lease, run, [placeholder], policy)


def _renormalize_batch(
    platform: str, capability: str, run: runs.Run, batch: Sequence[items.RawRow]
) -> tuple[int, list[tuple[items.RawRow, Result]], items.EvidenceBatch]:
    """Normalize stored raw rows (CPU only); placeholders keep the skip reason they have."""
    placeholders = sum(1 for r in batch if items.is_placeholder(r.raw_json))
    results = [
        (r, _normalize(platform, capability, r.raw_json))
        for r in batch
        if not items.is_placeholder(r.raw_json)
    ]
    rows = [
        _evidence_row(res, run.id, r.id, items.json_columns(res))
        for r, res in results
        if isinstance(res, normalize.NormalizedItem)
    ]
    return placeholders, results, items.evidence_batch(run.brand_id, rows)


async def _renormalize_write(
    conn: sa_async.AsyncConnection,
    *,
    run: runs.Run,
    reasons: Sequence[tuple[int, str | None]],
    evidence: items.EvidenceBatch,
) -> tuple[int, int]:
    await items.set_skip_reasons(conn, run.id, reasons)
    return await items.upsert_evidence(conn, run.brand_id, evidence)


async def renormalize(
    engine: sa_async.AsyncEngine,
    lease: queue_jobs.Lease,
    run: runs.Run,
    *,
    platform: str,
    capability: str,
    cap: int,
    batch_size: int = 1000,
    policy: tx.Policy = tx.DEFAULT,
) -> Counts:
    """Normalize a stored run's raw items again (a reused run never normalized), in batches.

    Only the first ``cap`` items by index count, as on fetch.
    """
    total = Counts()
    after = 0
    while True:
        batch = await tx.read(
            engine,
            functools.partial(
                items.read_raw, run_id=run.id, after=after, cap=cap, limit=batch_size
            ),
            policy=policy,
            operation="read_raw",
        )
        if not batch:
            break
        after = batch[-1].item_index + 1
        placeholders, results, evidence = await offload.run(
            _renormalize_batch, platform, capability, run, batch
        )
        reasons = [
            (r.id, res.reason if isinstance(res, normalize.Skip) else None) for r, res in results
        ]
        created, updated = await tx.write(
            engine,
            lease,
            functools.partial(_renormalize_write, run=run, reasons=reasons, evidence=evidence),
            policy=policy,
            operation="renormalize",
        )
        skipped = placeholders + sum(1 for _, res in results if isinstance(res, normalize.Skip))
        total = total + Counts(0, created, updated, skipped)

    async def finish(conn: sa_async.AsyncConnection) -> None:
        # Retention may have dropped the run's raw items since the job opened (the opening
        # read does not offer such a run for reuse): then what was read is not the run, and
        # must not be recorded as its normalization. The check waits for a drop in progress.
        if not await raw_partitions.raw_items_kept(conn, run.id):
            raise errors.HandlerError(
                f"the raw items of run {run.id} were dropped by retention while it was"
                " renormalized; the next attempt refreshes the source"
            )
        await runs.update(
            conn,
            run.id,
            normalized_at=sa.func.now(),
            normalized_item_count=total.created + total.updated,
            items_skipped=total.skipped,
        )

    await tx.write(engine, lease, finish, policy=policy, operation="renormalized")
    return total
