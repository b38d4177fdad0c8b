"""Footguns of storing a run and of the job's error, pinned where they live: the order of
intent and start, the raw insert's transaction, and the handler that hands the job's error
to the queue.

Each test goes through the real code path (the pipeline's own intent, the store's own
transaction, the service's handler run by a real worker), so the mutant that puts the
old behaviour back there fails it (``mutants/run-record-inserted-after-the-start.patch``,
``normalization-in-a-separate-transaction.patch``, ``handler-drops-the-jobs-error.patch``).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pipeline_kit import Kit

from kairo_ingest import config
from kairo_ingest.apify import reconcile
from kairo_ingest.db import items, runs, sources, tables
from kairo_ingest.domain import evidence, registry
from kairo_ingest.pipeline import compile_job, store
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import handlers
from kairo_ingest.worker import core, parameters
from support import outcomes

TIKTOK = [("tiktok", "profile_videos", "@acme")]
R = tables.apify_runs
BOUND_SECONDS = 30.0  # only the bound after which a test fails instead of hanging


def _video(n: int) -> dict[str, Any]:
    video_id = f"75926414370915{n:05d}"
    return {
        "id": video_id,
        "text": f"video {n}",
        "authorMeta": {"name": "acme"},
        "webVideoUrl": f"https://www.tiktok.com/@acme/video/{video_id}",
    }


async def test_the_intent_is_committed_with_the_exact_input_before_apify_hears_of_the_start(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old code started the Apify run, then created its record; a crash between
    left a paid run nobody knew of. At the moment Apify receives the start, the STARTING
    row is already committed (seen from another connection) with the exact input sent."""
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    real_start = kit.apify.start_run
    seen: list[tuple[str, Any, list[Any]]] = []

    async def start_run(actor_id: str, run_input: Any, **kwargs: Any) -> Any:
        committed = await kit.rows(
            R, R.c.job_id == lease.job_id, R.c.source_connection_id == source.id
        )
        seen.append((actor_id, run_input, committed))
        return await real_start(actor_id, run_input, **kwargs)

    monkeypatch.setattr(kit.apify, "start_run", start_run)

    result = await compile_job.run(kit.deps(), lease)

    assert result.verdict is evidence.Verdict.SUCCEEDED
    assert len(seen) == 1, "one start for one source"
    actor_id, sent, committed = seen[0]
    assert len(committed) == 1, "the intent was not committed before the start was sent"
    intent = outcomes.only(committed)
    assert intent.status == "STARTING"
    assert intent.apify_run_id is None
    assert intent.actor_id == actor_id
    assert intent.input == reconcile.canonical_input(sent)
    stored = outcomes.only(await kit.rows(R, R.c.source_connection_id == source.id))
    assert stored.id == intent.id
    assert stored.apify_run_id == result.evidence_status["refreshed"][0]["apify_run_id"]


async def _intent(kit: Kit, lease: queue_jobs.Lease, source: sources.Source) -> runs.Run:
    spec = registry.get_spec(source.platform, source.capability)
    async with kit.engine.begin() as conn:
        return await runs.create_intent(
            conn,
            job_id=lease.job_id,
            source_id=source.id,
            brand_id=source.brand_id,
            actor_id=spec.actor_id,
            run_input=spec.build_input(source.identifier, source.settings, spec.default_cap),
            item_cap=spec.default_cap,
            attempt=1,
        )


class _EvidenceWriteFailed(Exception):
    pass


async def test_a_failed_evidence_write_commits_no_raw_item_of_its_page(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old code stored raw items in one transaction and normalized them in
    another; a failure between left raw items whose evidence was never written (and a
    re-fetch skipped them as already stored). Raw items and their evidence commit together."""
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    run = await _intent(kit, lease, source)
    page = [(i, _video(i)) for i in range(5)]

    async def refuse(*args: Any, **kwargs: Any) -> tuple[int, int]:
        raise _EvidenceWriteFailed("the evidence write failed inside the page")

    monkeypatch.setattr(items, "upsert_evidence", refuse)
    with pytest.raises(_EvidenceWriteFailed):
        await store.store_page(
            kit.engine, lease, run, platform="tiktok", capability="profile_videos", page=page
        )
    assert await kit.count(tables.raw_apify_items) == 0, "raw items committed without evidence"
    monkeypatch.undo()

    counts = await store.store_page(
        kit.engine, lease, run, platform="tiktok", capability="profile_videos", page=page
    )

    assert counts == store.Counts(raw=5, created=5, updated=0, skipped=0)
    assert await kit.count(tables.normalized_evidence_items) == 5


async def test_the_handler_hands_the_jobs_error_to_the_queue(kit: Kit, db_url: str) -> None:
    """The job's error must reach jobs.last_error / last_error_kind through the
    service's handler and the worker, not only compile_job.run's result."""
    kit.sim.state.apply_config({"outcome_weights": {"FAILED": 1.0}})
    brand, _added = await kit.brand(TIKTOK)
    job, _ = await queue_jobs.enqueue(kit.engine, kind="compile", brand_id=brand, max_attempts=1)
    settings = config.Settings(database_url=db_url, listen_notify=False, poll_interval_seconds=0.1)
    worker = core.Worker(
        kit.engine,
        handlers.table(kit.deps()),
        parameters.WorkerConfig.from_settings(
            settings, owner=f"test-{uuid.uuid4().hex[:6]}", concurrency=2, dsn_for_listen=db_url
        ),
    )

    await outcomes.within(BOUND_SECONDS, worker.run(drain=True))

    row = await queue_jobs.get(kit.engine, job.id)
    assert row is not None
    assert row.status == "failed"
    assert row.last_error_kind == "apify_failed"
    assert row.last_error is not None
    assert "tiktok.profile_videos" in row.last_error
    assert row.evidence_status is not None
    assert len(row.evidence_status["failed"]) == 1
