"""What the ledger shows (db/ledger_queries.py, ``kairo-ingest ledger`` and ``costs``): runs by
state with their account and follower, the runs no job follows, and the spend of runs
that ended partial."""

from __future__ import annotations

import datetime as dt

import pytest
from ledger_kit import TOKEN_A, LedgerKit

from kairo_ingest import errors
from kairo_ingest.db import accounts, costs, ledger_queries, sources
from support import outcomes


async def test_runs_by_state_follower_and_how_they_ended(kit: LedgerKit) -> None:
    await kit.account("tenant-a", TOKEN_A)
    followed_brand, _ = await kit.brand("tenant-a")
    dropped_brand, _ = await kit.brand(pairs=[("tiktok", "profile_videos", "@other")])
    followed, _lease, _run = await kit.running_job(followed_brand)
    dropped, lease, run = await kit.running_job(dropped_brand)
    await kit.cancel_and_stop(lease)
    await kit.crash(dropped)

    async with kit.engine.connect() as conn:
        live = await ledger_queries.live_by_state(conn)
        unfollowed = await ledger_queries.unfollowed(conn)
        left = await ledger_queries.unwanted_left(conn)
    assert {(r["account"], r["followed_by"], r["runs"]) for r in live} == {
        ("tenant-a", "job", 1),
        ("default", "ledger", 1),
    }
    lost = outcomes.only(unfollowed)
    assert (lost["apify_run_id"], lost["job_status"]) == (run.apify_run_id, "cancelled")
    assert lost["unwanted"] == "its job is cancelled"
    assert left == 1

    await kit.ledger().round()

    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    async with kit.engine.connect() as conn:
        ended = await ledger_queries.ended_by_state(conn, since=since)
        assert await ledger_queries.unwanted_left(conn) == 0
        assert await ledger_queries.unfollowed(conn) == []
    aborted = outcomes.only(ended)
    summary = kit.sim_run(run.apify_run_id)
    assert (aborted["account"], aborted["status"], aborted["partial_reason"]) == (
        "default",
        "ABORTED",
        "aborted",
    )
    assert (aborted["ended_by"], aborted["runs"], aborted["without_cost"]) == ("ledger", 1, 0)
    assert aborted["usage_total_usd"] == summary["usageTotalUsd"]

    row = outcomes.only(await costs.report(kit.engine, account="default"))
    assert row["aborted_usd"] == row["usage_total_usd"] == summary["usageTotalUsd"]
    assert (row["timed_out_usd"], row["charge_cap_usd"]) == (0, 0)
    await kit.crash(followed)


async def test_a_source_moves_between_accounts_and_back_to_the_default(kit: LedgerKit) -> None:
    """``sources add ... --account default`` used to leave a moved source where it was."""
    await kit.account("tenant-a", TOKEN_A)
    brand, (source,) = await kit.brand("tenant-a")
    spec = {"brand_id": brand, "platform": source.platform, "capability": source.capability}
    moved, _ = await sources.add(
        kit.engine, **spec, identifier=source.identifier, account="default"
    )
    assert moved.account is None
    kept, _ = await sources.add(kit.engine, **spec, identifier=source.identifier)
    assert kept.account is None
    back, _ = await sources.add(
        kit.engine, **spec, identifier=source.identifier, account="tenant-a"
    )
    assert back.account == "tenant-a"


async def test_an_account_with_runs_still_going_cannot_be_removed(kit: LedgerKit) -> None:
    """The ledger needs the token of the account that started a run until the run ends."""
    await kit.account("tenant-a", TOKEN_A)
    brand, (source,) = await kit.brand("tenant-a")
    task, _lease, _run = await kit.running_job(brand)
    await kit.crash(task)
    await sources.add(
        kit.engine,
        brand_id=brand,
        platform=source.platform,
        capability=source.capability,
        identifier=source.identifier,
        account="default",
    )
    with pytest.raises(errors.UsageError, match="have not ended"):
        await accounts.remove(kit.engine, "tenant-a")
