"""An operator's abort of a run (the console's "abort runs"): the run is no job's any
more, even while its job holds its lease, and the ledger aborts it on Apify with the
token of the account that started it, and records its end and cost."""

from __future__ import annotations

import sqlalchemy as sa
from ledger_kit import TOKEN_A, LedgerKit, R

from kairo_apify_sim import platform
from kairo_ingest.db import ledger_queries as ledger_db
from kairo_ingest.queue import jobs as queue_jobs


async def test_a_run_an_operator_asked_to_abort_is_aborted_with_its_own_token(
    kit: LedgerKit,
) -> None:
    await kit.account("tenant-a", TOKEN_A)
    brand, _ = await kit.brand("tenant-a")
    task, lease, run = await kit.running_job(brand)
    await kit.crash(task)  # its handler stops; the job still holds its lease: it follows
    ledger = kit.ledger()
    await ledger.round()
    (followed,) = await kit.runs(R.c.id == run.id)
    assert not followed.ended  # the job's run: the ledger leaves it alone
    assert followed.abort_requested_at is None
    assert kit.sim_run(run.apify_run_id)["status"] == "RUNNING"

    async with kit.engine.begin() as conn:
        assert await ledger_db.request_abort(conn, [run.id]) == 1
        assert await ledger_db.request_abort(conn, [run.id]) == 0  # once
    await ledger.round()

    (ended,) = await kit.runs(R.c.id == run.id)
    summary = kit.sim_run(run.apify_run_id)
    assert summary["status"] == "ABORTED"
    assert (ended.status, ended.partial_reason, ended.ended_by) == ("ABORTED", "aborted", "ledger")
    assert float(ended.usage_total_usd) == summary["usageTotalUsd"] > 0
    assert set(summary["requestTokenTags"]) == {platform.token_tag(TOKEN_A)}
    job = await queue_jobs.get(kit.engine, lease.job_id)
    assert job is not None
    assert job.status == "running"  # the job itself is not touched


async def test_an_abort_request_never_marks_a_run_that_has_ended(kit: LedgerKit) -> None:
    brand, _ = await kit.brand()
    task, _lease, run = await kit.running_job(brand)
    await kit.crash(task)
    async with kit.engine.begin() as conn:
        await conn.execute(
            sa.update(R)
            .where(R.c.id == run.id)
            .values(status="SUCCEEDED", finished_at=sa.func.now())
        )
        assert await ledger_db.request_abort(conn, [run.id]) == 0
    (ended,) = await kit.runs(R.c.id == run.id)
    assert ended.status == "SUCCEEDED"
    async with kit.engine.connect() as conn:
        asked = await conn.scalar(
            sa.select(R.c.operator_abort_requested_at).where(R.c.id == run.id)
        )
    assert asked is None
