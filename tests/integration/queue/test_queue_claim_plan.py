"""Issue 12: a claim costs its batch, not its table.

The claim's CTE picks up to ``limit`` rows off ``ix_jobs_claimable``. Its UPDATE used to
join the picked ids back to ``jobs`` (``FROM picked WHERE j.id = picked.id``); with a
few tens of thousands of rows the planner hashed the picked ids and scanned the whole
table to match them, so every claim read every row, finished ones included (the profile:
3.5 ms of a 9.6 ms claim of 200 at 20,000 rows). The UPDATE now matches
``id = ANY(ARRAY(SELECT id FROM picked))``, which can only be primary-key lookups.
These tests read the plan PostgreSQL chooses, not a time.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.queue import sql
from kairo_ingest.worker import builtin

JOBS = 20_000  # where the old statement's plan scanned the table (measured)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _claim_plan(engine: sa_async.AsyncEngine, limit: int) -> list[dict[str, Any]]:
    """The executed plan of one claim, rolled back so the table stays as it was."""
    explain = sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + str(sql.CLAIM.compile()))
    params = {"owner": "plan", "limit": limit, "lease_seconds": 30, "kinds": [builtin.NOOP_KIND]}
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(sql.CLAIM_PLANNER)
        document = (await conn.execute(explain, params)).scalar_one()
        await transaction.rollback()
    if isinstance(document, str):
        document = json.loads(document)
    return _nodes(document[0]["Plan"])


async def test_a_claim_reads_jobs_by_index_only_and_never_scans_the_table(db_url: str) -> None:
    engine = db_engine.create(db_url, pool_size=2, max_overflow=0)
    try:
        await queue_jobs.enqueue_many(engine, kind=builtin.NOOP_KIND, count=JOBS)
        async with engine.begin() as conn:  # committed: a rolled-back ANALYZE leaves no stats
            await conn.execute(sa.text("ANALYZE jobs"))
        for limit in (50, 200, 800):
            nodes = await _claim_plan(engine, limit)
            on_jobs = [n for n in nodes if n.get("Relation Name") == "jobs"]
            assert on_jobs, nodes
            scans = {n["Node Type"] for n in on_jobs}
            assert "Seq Scan" not in scans, (limit, scans)
            updated = [n for n in nodes if n["Node Type"] == "ModifyTable"]
            assert [n["Actual Rows"] for n in updated] == [limit]
    finally:
        await engine.dispose()
