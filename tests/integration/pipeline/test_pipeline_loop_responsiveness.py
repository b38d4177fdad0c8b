"""Normalizing and encoding a page never runs on the event loop.

Measured by nothing but threads: every normalizer and raw-encoder call of a page must
run in a thread other than the loop's, and before the page's fenced transaction opens
(the fence holds the job row FOR SHARE, which starves the heartbeat while it lasts).
The loop-lag figures are in bench/loop_lag.py.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pipeline_kit import Kit

from kairo_ingest.db import items, runs, tables
from kairo_ingest.domain import normalize, registry
from kairo_ingest.pipeline import offload, store
from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes


def _good(n: int) -> dict[str, Any]:
    video = f"76{n:017d}"
    return {
        "id": video,
        "text": f"video {n} #tag",
        "authorMeta": {"name": "acme"},
        "webVideoUrl": f"https://www.tiktok.com/@acme/video/{video}",
    }


async def test_a_page_is_encoded_and_normalized_off_the_loop_before_the_fence(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    brand, (source,) = await kit.brand([("tiktok", "profile_videos", "@acme")])
    lease = await kit.lease(brand)
    spec = registry.get_spec(source.platform, source.capability)
    async with kit.engine.begin() as conn:
        run = await runs.create_intent(
            conn,
            job_id=lease.job_id,
            source_id=source.id,
            brand_id=brand,
            actor_id=spec.actor_id,
            run_input={},
            item_cap=100,
            attempt=1,
        )
    events: list[tuple[str, int, str]] = []
    real_normalize, real_encode, real_fence = (
        normalize.normalize,
        items.encode_raw,
        queue_jobs.fence,
    )

    def spy_normalize(*args: Any) -> Any:
        events.append(("normalize", threading.get_ident(), threading.current_thread().name))
        return real_normalize(*args)

    def spy_encode(value: Any) -> str:
        events.append(("encode", threading.get_ident(), threading.current_thread().name))
        return real_encode(value)

    real_batch = items.evidence_batch

    def spy_batch(*args: Any) -> items.EvidenceBatch:
        events.append(("evidence_batch", threading.get_ident(), threading.current_thread().name))
        return real_batch(*args)

    async def spy_fence(*args: Any) -> None:
        events.append(("fence", threading.get_ident(), threading.current_thread().name))
        await real_fence(*args)

    monkeypatch.setattr(normalize, "normalize", spy_normalize)
    monkeypatch.setattr(items, "encode_raw", spy_encode)
    monkeypatch.setattr(queue_jobs, "fence", spy_fence)
    monkeypatch.setattr(items, "evidence_batch", spy_batch)
    loop_thread = threading.get_ident()

    counts = await store.store_page(
        kit.engine,
        lease,
        run,
        platform="tiktok",
        capability="profile_videos",
        page=[(i, _good(i)) for i in range(20)],
    )

    assert counts.created == 20
    cpu = [e for e in events if e[0] in {"normalize", "encode"}]
    assert len(cpu) == 40
    assert all(ident != loop_thread for _, ident, _ in cpu), "normalized on the event loop"
    assert all(name.startswith(offload.THREAD_NAME_PREFIX) for _, _, name in cpu)
    fences = [i for i, e in enumerate(events) if e[0] == "fence"]
    assert fences, "the page was written without a fence"
    assert max(i for i, e in enumerate(events) if e[0] in {"normalize", "encode"}) < fences[0], (
        "the page was still being prepared inside its fenced transaction"
    )
    # Merging and laying out the evidence (inside the transaction) is off the loop too.
    batch = outcomes.only([e for e in events if e[0] == "evidence_batch"])
    assert batch[1] != loop_thread

    # The same holds for re-normalizing a stored run (a reused run never normalized).
    events.clear()
    await store.renormalize(
        kit.engine, lease, run, platform="tiktok", capability="profile_videos", cap=100
    )
    renormalized = [e for e in events if e[0] == "normalize"]
    assert len(renormalized) == 20
    assert all(ident != loop_thread for _, ident, _ in renormalized)
    assert await kit.count(tables.normalized_evidence_items) == 20


async def test_a_big_page_is_written_in_short_fenced_batches(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fence holds the job row FOR SHARE; the heartbeat cannot extend the lease while
    it is held. A page of 1,000 items is written in transactions of at most 250."""
    brand, (source,) = await kit.brand([("tiktok", "profile_videos", "@acme")])
    lease = await kit.lease(brand)
    async with kit.engine.begin() as conn:
        run = await runs.create_intent(
            conn,
            job_id=lease.job_id,
            source_id=source.id,
            brand_id=brand,
            actor_id="clockworks~tiktok-scraper",
            run_input={},
            item_cap=2000,
            attempt=1,
        )
    fences = 0
    real_fence = queue_jobs.fence

    async def counting_fence(*args: Any) -> None:
        nonlocal fences
        fences += 1
        await real_fence(*args)

    monkeypatch.setattr(queue_jobs, "fence", counting_fence)

    counts = await store.store_page(
        kit.engine,
        lease,
        run,
        platform="tiktok",
        capability="profile_videos",
        page=[(i, _good(i)) for i in range(1000)],
    )

    assert counts == store.Counts(raw=1000, created=1000, updated=0, skipped=0)
    assert store.WRITE_BATCH_ITEMS == 250
    assert fences == 4
