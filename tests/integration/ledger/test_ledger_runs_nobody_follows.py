"""Nobody followed a run whose job was gone: `jobs cancel`, the reaper failing a job on its
last attempt, or a wait that failed left its Apify run going, unrecorded, and out of the
budget at once. The run ledger follows every run to its end, whatever its job does.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from ledger_kit import TOKEN_A, TOKEN_B, LedgerKit, R, eventually

from kairo_apify_sim import platform
from kairo_ingest import errors
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import ledger_queries, run_slots, sources
from kairo_ingest.pipeline import compile_job
from kairo_ingest.pipeline import ledger as pipeline_ledger
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import listener as worker_listener
from support import outcomes


async def test_a_cancelled_jobs_run_is_aborted_and_recorded_with_its_cost(
    kit: LedgerKit,
) -> None:
    brand, _ = await kit.brand()
    task, lease, run = await kit.running_job(brand)
    await queue_jobs.cancel(kit.engine, lease.job_id)
    await kit.crash(task)  # its heartbeat misses: the handler stops, the run goes on
    assert kit.sim_run(run.apify_run_id)["status"] == "RUNNING"

    await kit.ledger().round()

    assert kit.live_on_apify() == []
    ended = outcomes.only(await kit.runs(R.c.id == run.id))
    summary = kit.sim_run(run.apify_run_id)
    assert summary["status"] == "ABORTED"
    assert (ended.status, ended.partial_reason, ended.ended_by) == ("ABORTED", "aborted", "ledger")
    assert ended.finished_at is not None
    assert float(ended.usage_total_usd) == summary["usageTotalUsd"] > 0
    assert ended.abort_requested_at is not None
    assert await kit.slots() == 0  # its slot is freed with the end


async def test_a_job_the_reaper_fails_for_good_has_its_run_aborted(kit: LedgerKit) -> None:
    brand, _ = await kit.brand()
    task, lease, run = await kit.running_job(brand, max_attempts=1)
    await kit.crash(task)  # killed with -9: nothing more from this worker
    await kit.expire(lease)
    reap = endings.reap(
        kit.engine, base_seconds=0.1, cap_seconds=0.1, caps=endings.Caps(max_interruptions=1)
    )
    _requeued, failed = await reap
    assert failed == 1

    await kit.ledger().round()

    ended = outcomes.only(await kit.runs(R.c.id == run.id))
    assert (ended.status, ended.ended_by) == ("ABORTED", "ledger")
    assert kit.live_on_apify() == []


async def test_a_pending_jobs_run_is_followed_to_its_end_not_aborted(kit: LedgerKit) -> None:
    """A job released at shutdown (or waiting on a retry's backoff) still wants its run:
    the ledger records its end, and the job's next attempt keeps it, paying nothing more."""
    brand, _ = await kit.brand()
    task, lease, run = await kit.running_job(brand)
    await kit.crash(task)
    assert await endings.release(kit.engine, [lease]) == 1
    ledger = kit.ledger()

    await ledger.round()
    noted = outcomes.only(await kit.runs(R.c.id == run.id))
    assert noted.status == "RUNNING"
    assert noted.ledger_check_at is not None
    assert kit.sim_run(run.apify_run_id)["status"] == "RUNNING"

    async def ended() -> bool:
        await ledger.round()
        row = outcomes.only(await kit.runs(R.c.id == run.id))
        return row.ended

    await kit.sim.state.wait_for_finish(kit.sim.state.runs[str(run.apify_run_id)], 30)
    await eventually(ended, what="the ledger records the run's end")
    done = outcomes.only(await kit.runs(R.c.id == run.id))
    summary = kit.sim_run(run.apify_run_id)
    assert (done.status, done.ended_by, done.partial_reason) == ("SUCCEEDED", "ledger", None)
    assert float(done.usage_total_usd) == summary["usageTotalUsd"]

    result = await compile_job.run(kit.deps(), await kit.claim())
    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["apify_run_id"] == run.apify_run_id
    assert entry["raw_items"] == summary["itemCount"]
    assert kit.sim.stats()["starts"] == 1


async def test_a_slot_counts_until_its_run_has_ended_whatever_its_job_does(
    kit: LedgerKit,
) -> None:
    """Old: the slot went with the job's lease (and a failed wait released it) while the
    run went on billing, so the budget granted past Apify's real limit."""
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=1)
    brand, _ = await kit.brand("tenant-a")
    task, lease, _run = await kit.running_job(brand)
    await queue_jobs.cancel(kit.engine, lease.job_id)
    await kit.crash(task)

    async with kit.engine.connect() as conn:
        used = await run_slots.usage(conn, "tenant-a")
    assert used.get("tenant-a", {}).get("runs") == 1  # still on Apify: it holds the slot

    await kit.ledger().round()
    async with kit.engine.connect() as conn:
        assert await run_slots.usage(conn, "tenant-a") == {}


async def test_a_moved_sources_run_that_no_job_follows_is_aborted_with_its_own_token(
    kit: LedgerKit,
) -> None:
    await kit.account("tenant-a", TOKEN_A)
    await kit.account("tenant-b", TOKEN_B)
    brand, (source,) = await kit.brand("tenant-a")
    task, lease, run = await kit.running_job(brand)
    await kit.crash(task)
    await endings.release(kit.engine, [lease])  # pending: it would resume the run
    await sources.add(
        kit.engine,
        brand_id=brand,
        platform=source.platform,
        capability=source.capability,
        identifier=source.identifier,
        account="tenant-b",
    )

    await kit.ledger().round()

    ended = outcomes.only(await kit.runs(R.c.id == run.id))
    assert (ended.status, ended.account) == ("ABORTED", "tenant-a")
    summary = kit.sim_run(run.apify_run_id)
    assert set(summary["requestTokenTags"]) == {platform.token_tag(TOKEN_A)}
    assert kit.sim.stats()["foreignTokenRequests"] == 0


async def test_an_unsent_intent_of_a_cancelled_job_ends_start_failed(kit: LedgerKit) -> None:
    brand, (source,) = await kit.brand()
    lease = await kit.lease(brand)
    intent = await kit.intent(lease, source, sent=False)
    await kit.cancel_and_stop(lease)

    await kit.ledger().round()

    ended = outcomes.only(await kit.runs(R.c.id == intent.id))
    assert (ended.status, ended.error_kind, ended.ended_by) == (
        "START_FAILED",
        errors.ErrorKind.CANCELLED.value,
        "ledger",
    )
    assert kit.sim.stats()["starts"] == 0


async def test_a_sent_intent_of_a_cancelled_job_finds_its_run_and_aborts_it(
    kit: LedgerKit,
) -> None:
    """The start's answer was lost, then the job was cancelled: the run exists on Apify."""
    brand, (source,) = await kit.brand()
    lease = await kit.lease(brand)
    intent = await kit.intent(lease, source, sent=True)
    started = await kit.apify.start_run(intent.actor_id, intent.input, max_items=intent.item_cap)
    await kit.cancel_and_stop(lease)

    await kit.ledger().round()

    ended = outcomes.only(await kit.runs(R.c.id == intent.id))
    assert (ended.apify_run_id, ended.status, ended.ended_by) == (started.id, "ABORTED", "ledger")
    assert kit.live_on_apify() == []


async def test_a_sent_intent_without_a_run_ends_start_failed_once_settled(
    kit: LedgerKit,
) -> None:
    brand, (source,) = await kit.brand()
    lease = await kit.lease(brand)
    intent = await kit.intent(lease, source, sent=True)
    await kit.cancel_and_stop(lease)
    ledger = kit.ledger(settle_seconds=0.5)

    await ledger.round()
    waiting = outcomes.only(await kit.runs(R.c.id == intent.id))
    assert waiting.status == "STARTING"  # not settled yet: a late run may still show up

    await asyncio.sleep(0.6)
    async with kit.engine.begin() as conn:  # its next look is due
        await conn.execute(R.update().where(R.c.id == intent.id).values(ledger_check_at=None))
    await ledger.round()
    ended = outcomes.only(await kit.runs(R.c.id == intent.id))
    assert (ended.status, ended.error_kind) == ("START_FAILED", "not_found")


@pytest.mark.parametrize("replicas", [2])
async def test_replicas_split_the_runs_and_look_at_each_once_per_round(
    kit: LedgerKit, replicas: int
) -> None:
    brands = [await kit.brand(pairs=[("tiktok", "profile_videos", f"@b{n}")]) for n in range(4)]
    held = [await kit.running_job(brand) for brand, _ in brands]
    for task, lease, _run in held:
        await queue_jobs.cancel(kit.engine, lease.job_id)
        await kit.crash(task)

    await asyncio.gather(*(kit.ledger().round() for _ in range(replicas)))

    assert kit.live_on_apify() == []
    assert kit.sim.stats()["abortRequests"] == len(held)  # one abort per run, not per replica


async def test_jobs_cancel_wakes_the_ledger_by_notify_not_by_its_interval(
    kit: LedgerKit, db_url: str
) -> None:
    brand, _ = await kit.brand()
    task, lease, run = await kit.running_job(brand)
    ledger = pipeline_ledger.Ledger(kit.deps(), interval_seconds=3600)  # it never polls
    listener = worker_listener.Listener(
        db_engine.plain_dsn(db_url), ledger.on_notify, channel=pipeline_ledger.CHANNEL
    )
    stop = asyncio.Event()
    loops = [asyncio.create_task(listener.run(stop)), asyncio.create_task(ledger.run(stop))]
    try:
        await outcomes.within(10, listener.listening.wait())

        async def first_round() -> bool:
            return ledger.rounds >= 1

        await eventually(first_round, what="the ledger's first round")
        await kit.crash(task)
        await queue_jobs.cancel(kit.engine, lease.job_id)

        async def aborted() -> bool:
            return kit.sim_run(run.apify_run_id)["status"] == "ABORTED"

        await eventually(aborted, what="the cancelled job's run is aborted", bound=10)
    finally:
        stop.set()
        await asyncio.gather(*loops)
    assert listener.notifications >= 1


async def test_a_run_one_replica_claimed_is_not_claimed_by_another_meanwhile(
    kit: LedgerKit,
) -> None:
    """A cancelled job's runs are due at once, whatever their backoff; once a replica has
    claimed them (it is aborting them now), another replica's round must not take them
    again, whether it runs at the same moment or just after."""
    brand, _ = await kit.brand()
    task, lease, run = await kit.running_job(brand)
    await kit.ledger().round()  # a first look while the job runs: nothing to do
    await kit.crash(task)
    await endings.release(kit.engine, [lease])
    # Pending: the run is noted and looked at again later (here: in 10 minutes).
    await pipeline_ledger.Ledger(kit.deps(), interval_seconds=600).round()
    noted = outcomes.only(await kit.runs(R.c.id == run.id))
    assert noted.ledger_check_at is not None
    assert noted.ledger_looked_at is not None
    assert noted.ledger_check_at - noted.ledger_looked_at > dt.timedelta(minutes=5)
    await queue_jobs.cancel(kit.engine, lease.job_id)

    async with kit.engine.begin() as conn:
        first = await ledger_queries.claim(conn, limit=10, hold_seconds=120)
    async with kit.engine.begin() as conn:
        second = await ledger_queries.claim(conn, limit=10, hold_seconds=120)

    assert [o.run.id for o in first] == [run.id]  # due at once despite its backoff
    assert first[0].unwanted == "its job is cancelled"
    assert second == []
