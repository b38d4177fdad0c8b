"""One regression test per footgun of storing a run and of the job's verdict, named after it.

Each fails on the old behaviour: run record written after the start, delete-and-reinsert
of raw items, select-then-insert upserts, one bad item aborting normalization, web items
without a URL collapsing into one, and a job marked succeeded when every source failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa
from pipeline_kit import ALL_SOURCES, Kit

from kairo_ingest import errors
from kairo_ingest.db import items, runs, sources, tables
from kairo_ingest.domain import evidence, registry
from kairo_ingest.pipeline import compile_job, store
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes

TIKTOK = [("tiktok", "profile_videos", "@acme")]
R = tables.apify_runs


async def _intent(kit: Kit, lease: queue_jobs.Lease, source_id: object) -> runs.Run:
    listed = await sources.list_sources(kit.engine, brand_id=lease.brand_id)
    source = next(s for s in listed if s.id == source_id)
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


@pytest.mark.parametrize("crash_point", ["before_start", "after_start_before_record"])
async def test_run_record_created_after_start_orphans_a_paid_run(
    kit: Kit, crash_point: str
) -> None:
    """The old code recorded the run after starting it; a crash between left an orphan
    and the retry started a second run. Here the intent is written first and resumed."""
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    run = await _intent(kit, lease, source.id)
    if crash_point == "after_start_before_record":
        # The start reached Apify (its sending committed first, as the pipeline does),
        # then the process died before recording its answer.
        async with kit.engine.begin() as conn:
            await runs.mark_sent(conn, run.id)
        await kit.apify.start_run(run.actor_id, run.input, max_items=run.item_cap)
    lease = await kit.reclaim(lease)

    result = await compile_job.run(kit.deps(), lease)

    assert result.verdict is evidence.Verdict.SUCCEEDED
    assert kit.sim.stats()["starts"] == 1
    stored = outcomes.only(await kit.rows(R, R.c.source_connection_id == source.id))
    assert stored.apify_run_id is not None
    assert stored.status == "SUCCEEDED"
    assert result.evidence_status["refreshed"][0]["apify_run_id"] == stored.apify_run_id


async def test_retried_job_resumes_the_running_apify_run_instead_of_starting_another(
    kit: Kit,
) -> None:
    kit.sim.state.apply_config({"time_factor": 0.05, "duration_min_seconds": 40})
    brand, (_source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    first = asyncio.create_task(compile_job.run(kit.deps(), lease))
    # Wait until the run is recorded as started, then "crash" the worker mid-wait.
    for _ in range(500):
        recorded = await kit.rows(R, R.c.apify_run_id.is_not(None))
        if recorded:
            break
        await asyncio.sleep(0.01)
    assert recorded, "the run was never recorded"
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first

    result = await compile_job.run(kit.deps(), await kit.reclaim(lease))

    assert kit.sim.stats()["starts"] == 1
    assert result.verdict is evidence.Verdict.SUCCEEDED
    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["apify_run_id"] == recorded[0].apify_run_id
    assert entry["reason"] == "resumed"


async def test_retry_does_not_pay_again_for_sources_that_already_succeeded(kit: Kit) -> None:
    brand, added = await kit.brand()
    lease = await kit.lease(brand, force_refresh=True)
    first = await compile_job.run(kit.deps(), lease)
    starts = kit.sim.stats()["starts"]
    assert starts == len(added)

    second = await compile_job.run(kit.deps(), await kit.reclaim(lease))

    assert kit.sim.stats()["starts"] == starts
    assert len(second.evidence_status["refreshed"]) == len(added)
    assert (
        first.evidence_status["refreshed"][0]["raw_items"]
        == (second.evidence_status["refreshed"][0]["raw_items"])
    )


async def test_refetch_after_crash_neither_duplicates_nor_deletes_raw_items(kit: Kit) -> None:
    """The old code deleted and re-inserted raw items. A re-fetch inserts only what is
    missing and keeps the ids (and so the raw_refs) of what was stored."""
    brand, (_source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    await compile_job.run(kit.deps(), lease)
    before = {r.item_index: r.id for r in await kit.rows(tables.raw_apify_items)}
    # Pretend the crash came after half of the pages: forget the rest and that we finished.
    run = outcomes.only(await kit.rows(R))
    async with kit.engine.begin() as conn:
        await conn.execute(
            sa.delete(tables.raw_apify_items).where(tables.raw_apify_items.c.item_index >= 3)
        )
        await conn.execute(sa.update(R).values(raw_stored_at=None, normalized_at=None))

    result = await compile_job.run(kit.deps(), await kit.reclaim(lease))

    after = {r.item_index: r.id for r in await kit.rows(tables.raw_apify_items)}
    assert sorted(after) == sorted(before)
    assert all(after[i] == before[i] for i in before if i < 3)
    assert result.verdict is evidence.Verdict.SUCCEEDED
    assert kit.sim.stats()["starts"] == 1
    assert run.apify_run_id == result.evidence_status["refreshed"][0]["apify_run_id"]


async def test_select_then_insert_upsert_races_into_duplicates(kit: Kit) -> None:
    """Select-then-insert let two workers both insert. Two jobs normalizing overlapping
    items of one brand at once leave exactly one evidence row per item."""
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    # Three more jobs of the same brand (other kinds), each with its own lease.
    noop_jobs = [
        (await queue_jobs.enqueue(kit.engine, kind=f"other-{i}", brand_id=brand))[0]
        for i in range(3)
    ]
    leases = [lease, *(await queue_jobs.claim(kit.engine, owner="t", limit=3, lease_seconds=60))]
    assert len(leases) == 1 + len(noop_jobs)
    page = [
        (
            i,
            {
                "id": f"76{i:017d}",
                "webVideoUrl": f"https://www.tiktok.com/@acme/video/{i}",
                "text": "x",
                "authorMeta": {"name": "acme"},
            },
        )
        for i in range(300)
    ]

    async def one(worker_lease: queue_jobs.Lease) -> store.Counts:
        intent = await _intent(kit, worker_lease, source.id)
        shuffled = page[::-1] if worker_lease is lease else page
        return await store.store_page(
            kit.engine,
            worker_lease,
            intent,
            platform="tiktok",
            capability="profile_videos",
            page=shuffled,
        )

    counts = await outcomes.value_of(asyncio.gather(*(one(w) for w in leases)))

    assert await kit.count(tables.normalized_evidence_items) == 300
    assert sum(c.created for c in counts) == 300
    assert sum(c.updated for c in counts) == 300 * (len(leases) - 1)


async def test_one_bad_item_aborts_the_whole_normalization(kit: Kit) -> None:
    """One exception stopped the old normalization. Poison items get a skip reason and
    the rest are stored - including a value PostgreSQL's jsonb refuses."""
    brand, (source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    run = await _intent(kit, lease, source.id)
    good = {
        "id": "7592641437091532062",
        "text": "ok",
        "authorMeta": {"name": "acme"},
        "webVideoUrl": "https://www.tiktok.com/@acme/video/7592641437091532062",
    }
    page = [
        (0, good),
        (1, {"error": "no_items", "errorDescription": "Empty or private data"}),
        (2, "not an object"),
        (3, {"text": "no id, no url"}),
        (4, {**good, "id": {"nested": "dict"}}),
        (
            5,
            {
                **good,
                "id": "7592641437091532063",
                "text": "lone surrogate \ud800 here",
                "webVideoUrl": "https://www.tiktok.com/@acme/video/7592641437091532063",
            },
        ),
        (
            6,
            {
                **good,
                "id": "7592641437091532064",
                "text": "nul \u0000 char",
                "webVideoUrl": "https://www.tiktok.com/@acme/video/7592641437091532064",
            },
        ),
        # Python's JSON parser accepts NaN; jsonb does not: stored as a placeholder.
        (
            7,
            {
                **good,
                "id": "7592641437091532065",
                "playCount": float("nan"),
                "webVideoUrl": "https://www.tiktok.com/@acme/video/7592641437091532065",
            },
        ),
    ]

    counts = await outcomes.value_of(
        store.store_page(
            kit.engine, lease, run, platform="tiktok", capability="profile_videos", page=page
        )
    )

    raw = {r.item_index: r for r in await kit.rows(tables.raw_apify_items)}
    assert sorted(raw) == list(range(8)), "every item is kept raw"
    assert [raw[i].skip_reason for i in range(8)] == [
        None,
        "error_item",
        "invalid_field:item",
        "missing_id",
        "invalid_field:id",
        None,
        None,
        "unstorable:invalid_json",
    ]
    assert raw[5].raw_json["text"] == "lone surrogate \ufffd here"
    assert raw[6].raw_json["text"] == "nul  char"
    assert raw[7].raw_json["kairo_unstorable"] == "invalid_json"
    assert "NaN" in raw[7].raw_json["excerpt"]
    assert counts == store.Counts(raw=8, created=3, updated=0, skipped=5)
    assert await kit.count(tables.normalized_evidence_items) == 3


async def test_web_items_without_a_url_collapse_into_one(kit: Kit) -> None:
    brand, (source,) = await kit.brand([("web", "crawl_pages", "https://acme.example/")])
    lease = await kit.lease(brand)
    run = await _intent(kit, lease, source.id)
    long_text = "words " * 50
    page = [
        (0, {"text": long_text, "metadata": {"title": "no url at all"}}),
        (1, {"text": long_text, "metadata": {"title": "no url either"}}),
        (2, {"url": "https://acme.example/a", "text": long_text}),
        (3, {"url": "https://acme.example/b", "text": long_text}),
    ]

    counts = await outcomes.value_of(
        store.store_page(
            kit.engine, lease, run, platform="web", capability="crawl_pages", page=page
        )
    )

    assert counts.created == 2
    urls = sorted(r.canonical_url for r in await kit.rows(tables.normalized_evidence_items))
    assert urls == ["https://acme.example/a", "https://acme.example/b"]
    reasons = [r.skip_reason for r in await kit.rows(tables.raw_apify_items)]
    assert reasons.count("missing_url") == 2


async def test_job_marked_succeeded_when_every_source_failed(kit: Kit) -> None:
    """The old runner succeeded with every source failed. Retryable failures retry."""
    kit.sim.state.apply_config({"outcome_weights": {"FAILED": 1.0}})
    brand, added = await kit.brand()
    result = await compile_job.run(kit.deps(), await kit.lease(brand))

    assert result.verdict is evidence.Verdict.RETRY
    assert result.error is not None
    assert result.error.retryable
    assert len(result.evidence_status["failed"]) == len(added)
    assert {e["error_kind"] for e in result.evidence_status["failed"]} == {"apify_failed"}


async def test_permanent_failures_fail_the_job_with_the_evidence_kept(kit: Kit) -> None:
    kit.sim.state.apply_config({"expected_token": "some-other-token"})
    brand, _added = await kit.brand()
    lease = await kit.lease(brand)
    result = await compile_job.run(kit.deps(), lease)

    assert result.verdict is evidence.Verdict.FAILED
    assert {e["error_kind"] for e in result.evidence_status["failed"]} == {"auth"}
    assert all(e["retryable"] is False for e in result.evidence_status["failed"])
    assert kit.sim.stats()["starts"] == 0
    # Through the queue: failed at once, whatever the attempts, evidence kept.
    assert result.error is not None
    await endings.fail(
        kit.engine,
        lease,
        result.error,
        evidence_status=result.evidence_status,
        base_seconds=1,
        cap_seconds=1,
        snooze_seconds=1,
    )
    job = await queue_jobs.get(kit.engine, lease.job_id)
    assert job is not None
    assert job.status == "failed"
    assert job.last_error_kind == "auth"
    assert job.evidence_status == result.evidence_status


async def test_evidence_status_names_every_source_once_with_classified_errors(kit: Kit) -> None:
    """The old runner named only "platform.capability" and dropped error kinds."""
    brand, added = await kit.brand(
        [*ALL_SOURCES, ("linkedin", "profile_posts", "https://www.linkedin.com/in/x")]
    )
    # A source whose stored settings cannot build an actor input: a permanent failure.
    async with kit.engine.begin() as conn:
        await conn.execute(
            sa.update(tables.source_connections)
            .where(tables.source_connections.c.platform == "web")
            .values(settings={"extra_start_urls": "not a list"})
        )
    deps = kit.deps(disabled_capabilities=frozenset({"youtube.channel_videos"}))
    result = await compile_job.run(deps, await kit.lease(brand))

    status = result.evidence_status
    seen = [
        e["source_id"]
        for bucket in ("refreshed", "reused", "skipped", "failed")
        for e in status[bucket]
    ]
    assert sorted(seen) == sorted(str(s.id) for s in added)
    assert {e["platform"] + "." + e["capability"] for e in status["skipped"]} == {
        "youtube.channel_videos",
        "linkedin.profile_posts",
    }
    failed = outcomes.only(status["failed"])
    assert (failed["platform"], failed["error_kind"], failed["retryable"]) == (
        "web",
        "invalid_input",
        False,
    )
    for entry in status["refreshed"]:
        assert set(entry) >= {
            "source_id",
            "platform",
            "capability",
            "reason",
            "run_id",
            "apify_run_id",
            "apify_status",
            "dataset_id",
            "raw_items",
            "normalized_created",
            "normalized_updated",
            "items_skipped",
        }
        assert entry["apify_status"] == "SUCCEEDED"
    assert result.verdict is evidence.Verdict.FAILED


async def test_run_deadline_aborts_the_apify_run_and_keeps_what_it_paid_for(kit: Kit) -> None:
    """At the pipeline: the old client left the run running (and billing) after giving up.
    Then the run was recorded TIMED-OUT without its cost and its paid items were thrown away
    (and paid for again by the retry). Now: Apify's real end and cost from the final look,
    the items pushed before the abort kept, and the entry marked partial, timed out."""
    kit.sim.state.apply_config(
        {"time_factor": 0.05, "duration_min_seconds": 60, "duration_max_seconds": 60}
    )
    brand, (_source,) = await kit.brand(TIKTOK)
    # Under a second: Apify is sent `timeout=0` (none), so our deadline comes first.
    result = await compile_job.run(kit.deps(run_deadline_seconds=0.9), await kit.lease(brand))

    entry = outcomes.only(result.evidence_status["refreshed"])
    assert (entry["partial"], entry["partial_reason"]) == (True, "timed_out")
    assert entry["apify_status"] == "ABORTED"
    run = outcomes.only(await kit.rows(R))
    summary = outcomes.only(kit.sim.state.run_summaries())
    assert (run.status, run.partial_reason, run.ended_by) == ("ABORTED", "timed_out", "final_look")
    assert run.finished_at is not None
    assert float(run.usage_total_usd) == summary["usageTotalUsd"] > 0
    assert 0 < run.raw_item_count == summary["itemCount"]
    assert kit.sim.stats()["abortRequests"] >= 1
    assert kit.sim.stats()["starts"] == 1  # not started again: its results are kept
    assert result.verdict is evidence.Verdict.SUCCEEDED


async def test_fresh_runs_are_reused_and_failed_runs_never_are(kit: Kit) -> None:
    brand, (source,) = await kit.brand(TIKTOK)
    # Only a failed run exists: it is no cache, so the source is refreshed.
    async with kit.engine.begin() as conn:
        await conn.execute(
            sa.insert(R).values(
                source_connection_id=source.id,
                brand_id=brand,
                actor_id="x",
                input={},
                status="FAILED",
                finished_at=sa.func.now(),
                raw_stored_at=sa.func.now(),
            )
        )
    lease = await kit.lease(brand)
    first = await compile_job.run(kit.deps(), lease)
    assert [e["reason"] for e in first.evidence_status["refreshed"]] == ["no_succeeded_run"]
    await endings.complete(kit.engine, lease)
    assert kit.sim.stats()["starts"] == 1

    lease = await kit.lease(brand)
    reused = await compile_job.run(kit.deps(), lease)
    assert [e["reason"] for e in reused.evidence_status["reused"]] == ["fresh_run_within_ttl"]
    assert kit.sim.stats()["starts"] == 1
    await endings.complete(kit.engine, lease)

    stale = await compile_job.run(kit.deps(freshness_ttl=dt.timedelta(0)), await kit.lease(brand))
    assert [e["reason"] for e in stale.evidence_status["refreshed"]] == ["run_older_than_ttl"]
    assert kit.sim.stats()["starts"] == 2


async def test_reused_run_never_normalized_is_normalized_from_stored_raw_items(kit: Kit) -> None:
    brand, (_source,) = await kit.brand(TIKTOK)
    lease = await kit.lease(brand)
    first = await compile_job.run(kit.deps(), lease)
    await endings.complete(kit.engine, lease)
    created = first.evidence_status["refreshed"][0]["normalized_created"]
    assert created > 0
    async with kit.engine.begin() as conn:
        await conn.execute(sa.delete(tables.normalized_evidence_items))
        await conn.execute(sa.update(R).values(normalized_at=None))

    again = await compile_job.run(kit.deps(), await kit.lease(brand))

    entry = outcomes.only(again.evidence_status["reused"])
    assert entry["normalized_created"] == created
    assert await kit.count(tables.normalized_evidence_items) == created
    assert kit.sim.stats()["starts"] == 1


async def test_cap_is_sent_to_apify_and_enforced_on_fetch(kit: Kit) -> None:
    kit.sim.state.apply_config({"default_item_count": 50})
    brand, (_source,) = await kit.brand(TIKTOK)
    deps = kit.deps(caps={"tiktok.profile_videos": 3})
    result = await compile_job.run(deps, await kit.lease(brand))

    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["raw_items"] == 3
    run = outcomes.only(await kit.rows(R))
    assert run.input["resultsPerPage"] == 3
    assert run.item_cap == 3


async def test_stale_worker_cannot_write_pipeline_results(kit: Kit) -> None:
    """Fencing: after a takeover, the old owner's page write changes nothing."""
    brand, (source,) = await kit.brand(TIKTOK)
    old = await kit.lease(brand)
    run = await _intent(kit, old, source.id)
    await kit.reclaim(old)

    with pytest.raises(errors.LeaseLostError):
        await store.store_page(
            kit.engine,
            old,
            run,
            platform="tiktok",
            capability="profile_videos",
            page=[(0, {"id": "1", "webVideoUrl": "https://www.tiktok.com/@a/video/1"})],
        )
    assert await kit.count(tables.raw_apify_items) == 0
    assert await kit.count(tables.normalized_evidence_items) == 0


def test_items_dumps_is_jsonb_safe() -> None:
    assert items.dumps({"a": "x\u0000y"}) == '{"a":"xy"}'


async def test_a_lost_lease_surfaces_as_lease_lost_not_as_a_job_failure(kit: Kit) -> None:
    """Sources run in a TaskGroup; a lost lease must not come out wrapped in a group."""
    brand, _ = await kit.brand()
    lease = await kit.lease(brand)
    await kit.reclaim(lease)

    with pytest.raises(errors.LeaseLostError):
        await compile_job.run(kit.deps(), lease)
    assert kit.sim.stats()["starts"] == 0
