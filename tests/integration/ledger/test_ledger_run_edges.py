"""An Apify run lives longer and ends in more ways than the job that started it: one test
per way the old code lost sight of a paid run at its edges (the run-ledger issue).

Each fails on the old code: an adopted run that had already ended broke freshness for
good; TIMED-OUT results were thrown away and paid for again; a resumed intent at the
daily cap became START_FAILED although its run existed; a resume used the source's new
account instead of the run's; settling was timed from the intent (before the budget
wait) and the exclusion set missed runs other intents owned; one account at its limit
held every process slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
from typing import Any

import pytest
import sqlalchemy as sa
from ledger_kit import TOKEN_A, TOKEN_B, LedgerKit, R, eventually

from kairo_apify_sim import platform
from kairo_ingest import clock, errors
from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import sources
from kairo_ingest.pipeline import compile_job
from support import outcomes

QUICK = {"duration_min_seconds": 10, "duration_max_seconds": 20}  # runs of 0.5 to 1 s


async def _ended(kit: LedgerKit, run_id: str) -> apify_models.RunInfo:
    return await kit.apify.wait_for_run(run_id, clock.Deadline.after(30))


async def test_a_run_adopted_after_it_ended_is_recorded_whole_and_fresh_for_the_next_job(
    kit: LedgerKit,
) -> None:
    """Old: adoption wrote the run's id and status but no finished_at nor cost; the
    freshness lookup sorted that NULL first, so every later job refreshed and paid again."""
    kit.sim.state.apply_config(QUICK)
    brand, (source,) = await kit.brand()
    lease = await kit.lease(brand)
    intent = await kit.intent(lease, source, sent=True)
    started = await kit.apify.start_run(intent.actor_id, intent.input, max_items=intent.item_cap)
    await _ended(kit, started.id)  # the start's answer was lost; the run ended meanwhile

    lease = await kit.reclaim(lease)
    result = await compile_job.run(kit.deps(), lease)
    await kit.complete(lease, result)

    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["apify_run_id"] == started.id
    row = outcomes.only(await kit.runs(R.c.id == intent.id))
    summary = kit.sim_run(started.id)
    assert (row.status, row.ended_by) == ("SUCCEEDED", "adoption")
    assert row.finished_at is not None
    assert float(row.usage_total_usd) == summary["usageTotalUsd"] > 0
    again = await compile_job.run(kit.deps(), await kit.lease(brand, force_refresh=False))
    reused = outcomes.only(again.evidence_status["reused"])
    assert reused["apify_run_id"] == started.id
    assert kit.sim.stats()["starts"] == 1


async def test_a_run_that_apify_timed_out_keeps_its_paid_items_and_is_not_run_again(
    kit: LedgerKit,
) -> None:
    """Old: items were read only from SUCCEEDED runs and a TIMED-OUT one was started again
    with the same input: paid twice (up to max_attempts times), with no data."""
    kit.sim.state.apply_config({**QUICK, "outcome_weights": {"TIMED-OUT": 1.0}})
    brand, _ = await kit.brand()

    result = await compile_job.run(kit.deps(), await kit.lease(brand))

    entry = outcomes.only(result.evidence_status["refreshed"])
    assert (entry["partial"], entry["partial_reason"]) == (True, "timed_out")
    row = outcomes.only(await kit.runs())
    summary = kit.sim_run(row.apify_run_id)
    assert row.status == "TIMED-OUT"
    assert 0 < row.raw_item_count == summary["itemCount"]
    assert float(row.usage_total_usd) == summary["usageTotalUsd"]
    assert kit.sim.stats()["starts"] == 1
    assert result.error is None


async def test_a_resumed_intent_at_the_daily_cap_adopts_its_run_instead_of_failing(
    kit: LedgerKit,
) -> None:
    """Old: the resumed intent asked the budget first; the cap marked it START_FAILED
    although its run existed, and the next day a second run started and the first, paid,
    was never adopted."""
    kit.sim.state.apply_config(QUICK)
    await kit.account("tenant-a", TOKEN_A, daily_cap_usd=decimal.Decimal("0.01"))
    brand, (source,) = await kit.brand("tenant-a")
    lease = await kit.lease(brand)
    intent = await kit.intent(lease, source, sent=True)
    api = (await kit.tenants.resolve("tenant-a")).api
    started = await api.start_run(intent.actor_id, intent.input, max_items=intent.item_cap)
    async with kit.engine.begin() as conn:  # the day's spend reached the cap meanwhile
        await conn.execute(
            sa.insert(R).values(
                source_connection_id=source.id,
                brand_id=brand,
                actor_id="another~actor",
                input={},
                status="SUCCEEDED",
                account="tenant-a",
                finished_at=sa.func.now(),
                usage_total_usd=decimal.Decimal("0.02"),
            )
        )

    result = await compile_job.run(kit.deps(), await kit.reclaim(lease))

    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["apify_run_id"] == started.id
    row = outcomes.only(await kit.runs(R.c.id == intent.id))
    assert row.status == "SUCCEEDED"
    assert kit.sim.stats()["starts"] == 1


async def test_a_resume_after_the_source_moved_uses_the_account_that_started_the_run(
    kit: LedgerKit,
) -> None:
    """Old: the resume took the source's current account: it read A's run with B's token
    (which Apify answers 404) or listed B's runs, found nothing and started a second run."""
    await kit.account("tenant-a", TOKEN_A)
    await kit.account("tenant-b", TOKEN_B)
    brand, (source,) = await kit.brand("tenant-a")
    task, lease, run = await kit.running_job(brand)
    await kit.crash(task)
    await sources.add(
        kit.engine,
        brand_id=brand,
        platform=source.platform,
        capability=source.capability,
        identifier=source.identifier,
        account="tenant-b",
    )

    result = await compile_job.run(kit.deps(), await kit.reclaim(lease))

    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["apify_run_id"] == run.apify_run_id
    summary = kit.sim_run(run.apify_run_id)
    assert set(summary["requestTokenTags"]) == {platform.token_tag(TOKEN_A)}
    assert kit.sim.stats()["foreignTokenRequests"] == 0
    assert kit.sim.stats()["starts"] == 1


async def test_settling_is_timed_from_the_last_send_not_from_the_intent(
    kit: LedgerKit,
) -> None:
    """Old: settling counted from intent_at, written before the budget wait: an intent
    resumed 30 s or more after it got no settling at all, missed a run created late and
    started a second one."""
    kit.sim.state.apply_config(
        {
            **QUICK,
            "visibility_lag_seconds": 0.5,
            "late_creation_seconds": 1.5,
            "faults": {"start": {"drop": 1.0}},
        }
    )
    brand, (source,) = await kit.brand()
    lease = await kit.lease(brand)
    long_ago = sa.func.now() - dt.timedelta(minutes=10)  # it waited for a slot that long
    intent = await kit.intent(lease, source, sent=True, intent_at=long_ago)
    with contextlib.suppress(errors.ApifyStartUnknownError):  # the answer is lost, then a crash
        await kit.apify.start_run(intent.actor_id, intent.input, max_items=intent.item_cap)
    kit.sim.state.apply_config({"faults": None})

    result = await compile_job.run(kit.deps(), await kit.reclaim(lease))

    assert kit.sim.stats()["starts"] == 1
    assert kit.sim.stats()["lateStarts"] == 1
    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["apify_run_id"] is not None


async def test_a_run_another_intent_recorded_is_never_adopted_whatever_that_intents_age(
    kit: LedgerKit,
) -> None:
    """Old: the runs other intents own were filtered by their intent's age, so a run bound
    to an intent recorded long before its run started (a budget wait) was not excluded:
    another brand with the same input adopted it, hit the unique constraint on every
    attempt, and its own paid run was never recorded."""
    kit.sim.state.apply_config(QUICK)
    first_brand, (first,) = await kit.brand()
    first_lease = await kit.lease(first_brand)
    long_ago = sa.func.now() - dt.timedelta(minutes=10)
    owner = await kit.intent(first_lease, first, sent=True, intent_at=long_ago)
    owned = await kit.apify.start_run(owner.actor_id, owner.input, max_items=owner.item_cap)
    async with kit.engine.begin() as conn:
        await conn.execute(
            R.update()
            .where(R.c.id == owner.id)
            .values(apify_run_id=owned.id, status="RUNNING", started_at=sa.func.now())
        )
    brand, (source,) = await kit.brand()  # another brand, the same identifier: same input
    lease = await kit.lease(brand)
    intent = await kit.intent(lease, source, sent=True)
    assert intent.input == owner.input
    ours = await kit.apify.start_run(intent.actor_id, intent.input, max_items=intent.item_cap)

    result = await compile_job.run(kit.deps(), await kit.reclaim(lease))

    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["apify_run_id"] == ours.id
    assert kit.sim.stats()["starts"] == 2


async def test_one_account_at_its_limit_does_not_hold_the_slots_of_another(
    kit: LedgerKit,
) -> None:
    """Old: the process-wide run slot was taken before the account's budget, so sources
    waiting for a full account held every process slot while another account was idle."""
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=1)
    await kit.account("tenant-b", TOKEN_B)
    pairs = [("tiktok", "profile_videos", f"@a{n}") for n in range(3)]
    busy, _ = await kit.brand("tenant-a", pairs)
    idle, _ = await kit.brand("tenant-b")
    deps = kit.deps(run_slots=asyncio.Semaphore(2))
    first, _lease, first_run = await kit.running_job(busy, deps)
    second = asyncio.create_task(compile_job.run(deps, await kit.lease(idle)))

    async def started() -> bool:
        rows = await kit.rows(R.c.brand_id == idle, R.c.apify_run_id.is_not(None))
        return bool(rows)

    await eventually(started, what="the other account's run starts")
    other = outcomes.only(await kit.runs(R.c.brand_id == idle))
    blocker = kit.sim_run(first_run.apify_run_id)
    # It started while the first account's run was still going, not after it ended.
    assert (
        blocker["finishedAt"] is None
        or blocker["finishedAt"] > kit.sim_run(other.apify_run_id)["startedAt"]
    )
    for task in (first, second):
        await kit.crash(task)


async def test_sent_at_is_committed_before_each_start_request_goes_out(
    kit: LedgerKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without it a resume cannot tell "never sent" (start at once) from "sent, answer
    lost" (reconcile, settled from the last send): every start request, the re-send after
    an unknown outcome too, is preceded by a committed sent_at."""
    kit.sim.state.apply_config(QUICK)
    brand, _ = await kit.brand()
    lease = await kit.lease(brand)
    real_start = kit.apify.start_run
    seen: list[dt.datetime | None] = []

    async def start_run(actor_id: str, run_input: Any, **kwargs: Any) -> Any:
        (row,) = await kit.rows(R.c.job_id == lease.job_id)  # what another connection sees
        seen.append(row.sent_at)
        if len(seen) == 1:  # the first request's answer is lost (it never reached Apify)
            raise errors.ApifyStartUnknownError("start_run: connection dropped")
        return await real_start(actor_id, run_input, **kwargs)

    async def no_settling(seconds: float) -> None:
        await asyncio.sleep(0)

    monkeypatch.setattr(kit.apify, "start_run", start_run)
    monkeypatch.setattr(kit.apify, "sleep", no_settling)

    result = await compile_job.run(kit.deps(), lease)

    assert len(result.evidence_status["refreshed"]) == 1
    first, second = seen
    assert first is not None
    assert second is not None
    assert second > first  # settling is measured from the last send
    assert kit.sim.stats()["starts"] == 1


async def test_a_run_without_an_end_time_never_counts_as_the_newest(kit: LedgerKit) -> None:
    """An older row recorded SUCCEEDED without finished_at sorted first (NULLs lead a
    DESC order): it looked newest forever and hid the run that was really fresh."""
    brand, (source,) = await kit.brand()
    lease = await kit.lease(brand)
    result = await compile_job.run(kit.deps(), lease)
    await kit.complete(lease, result)
    fresh = outcomes.only(await kit.runs())
    async with kit.engine.begin() as conn:  # a row an older release left without its end
        await conn.execute(
            sa.insert(R).values(
                source_connection_id=source.id,
                brand_id=brand,
                actor_id=fresh.actor_id,
                input=fresh.input,
                status="SUCCEEDED",
                apify_run_id="legacy-run",
                raw_stored_at=sa.func.now(),
                normalized_at=sa.func.now(),
            )
        )

    again = await compile_job.run(kit.deps(), await kit.lease(brand, force_refresh=False))

    reused = outcomes.only(again.evidence_status["reused"])
    assert reused["apify_run_id"] == fresh.apify_run_id
    assert kit.sim.stats()["starts"] == 1


@pytest.mark.parametrize("outcome", ["ABORTED", "SUCCEEDED"])
async def test_a_run_stopped_at_its_charge_cap_keeps_its_items_and_is_not_run_again(
    kit: LedgerKit, outcome: str
) -> None:
    """Old: a run the platform aborted at its maxTotalChargeUsd lost its paid items and
    was started again with the same input, to hit the same cap (up to max_attempts times
    the cap, with no data). Either way a capped run ends, its items are kept and its entry
    says it stopped at the cap, from the run object's numbers."""
    kit.sim.state.apply_config(
        {
            "time_factor": 0.01,
            "duration_min_seconds": 20,
            "duration_max_seconds": 20,
            "charge_cap_outcome_weights": {outcome: 1.0},
        }
    )
    brand, _ = await kit.brand(pairs=[("instagram", "posts", "@acme")])

    result = await compile_job.run(kit.deps(run_max_charge_usd=0.02), await kit.lease(brand))

    entry = outcomes.only(result.evidence_status["refreshed"])
    assert (entry.get("partial"), entry.get("partial_reason")) == (True, "charge_cap")
    row = outcomes.only(await kit.runs())
    summary = kit.sim_run(row.apify_run_id)
    assert summary["stoppedAtMaxCharge"]
    assert (row.status, row.partial_reason) == (outcome, "charge_cap")
    assert 0 < row.raw_item_count == summary["itemCount"]
    assert float(row.usage_total_usd) == summary["usageTotalUsd"] <= 0.02
    assert float(row.max_total_charge_usd) == 0.02
    assert row.charged_event_counts == {"apify-default-dataset-item": summary["itemCount"]}
    assert kit.sim.stats()["starts"] == 1
    assert result.error is None
