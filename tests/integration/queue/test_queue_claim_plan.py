"""A claim (and a prune) costs its batch, not its table.

The claim's CTE picks up to ``limit`` rows off ``ix_jobs_claimable``. Its UPDATE used to
join the picked ids back to ``jobs`` (``FROM picked WHERE j.id = picked.id``); with a
few tens of thousands of rows the planner hashed the picked ids and scanned the whole
table to match them, so every claim read every row, finished ones included (the profile:
3.5 ms of a 9.6 ms claim of 200 at 20,000 rows). The UPDATE now matches
``id = ANY(ARRAY(SELECT id FROM picked))``, which can only be primary-key lookups.
The pruner's DELETE had the same join (``USING doomed``) and the same plan. These tests
read the plan PostgreSQL chooses, not a time.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.queue import sql
from support import noop

JOBS = 20_000  # where the old statement's plan scanned the table (measured)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _plan(
    engine: sa_async.AsyncEngine, statement: sa.TextClause, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """The executed plan of one statement, rolled back so the table stays as it was."""
    explain = sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + str(statement.compile()))
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(sql.CLAIM_PLANNER)
        document = (await conn.execute(explain, params)).scalar_one()
        await transaction.rollback()
    if isinstance(document, str):
        document = json.loads(document)
    return _nodes(document[0]["Plan"])


def _scans_of_jobs(nodes: list[dict[str, Any]]) -> set[str]:
    on_jobs = [n for n in nodes if n.get("Relation Name") == "jobs"]
    assert on_jobs, nodes
    return {n["Node Type"] for n in on_jobs}


async def _analyze(engine: sa_async.AsyncEngine) -> None:
    async with engine.begin() as conn:  # committed: a rolled-back ANALYZE leaves no stats
        await conn.execute(sa.text("ANALYZE jobs"))


async def test_a_claim_reads_jobs_by_index_only_and_never_scans_the_table(db_url: str) -> None:
    engine = db_engine.create(db_url, pool_size=2, max_overflow=0)
    try:
        await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=JOBS)
        await _analyze(engine)
        for limit in (50, 200, 800):
            params = {"owner": "plan", "limit": limit, "lease_seconds": 30, "kinds": None}
            nodes = await _plan(engine, sql.CLAIM, params)
            assert "Seq Scan" not in _scans_of_jobs(nodes), limit
            updated = [n for n in nodes if n["Node Type"] == "ModifyTable"]
            assert [n["Actual Rows"] for n in updated] == [limit]
    finally:
        await engine.dispose()


async def test_a_prune_batch_deletes_by_index_only_and_never_scans_the_table(
    db_url: str,
) -> None:
    engine = db_engine.create(db_url, pool_size=2, max_overflow=0)
    try:
        await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=JOBS)
        async with engine.begin() as conn:  # every job finished a month ago
            await conn.execute(
                sa.text(
                    "UPDATE jobs SET status = 'succeeded', "
                    "finished_at = now() - make_interval(days => 30)"
                )
            )
        await _analyze(engine)
        params = {"older_than_seconds": 86_400.0, "batch": queue_jobs.PRUNE_BATCH}
        nodes = await _plan(engine, sql.PRUNE, params)
        assert "Seq Scan" not in _scans_of_jobs(nodes)
        # One batch, picked oldest first along the finished-jobs index.
        walked = [n for n in nodes if n.get("Index Name") == "ix_jobs_finished"]
        assert [n["Actual Rows"] for n in walked] == [queue_jobs.PRUNE_BATCH]
    finally:
        await engine.dispose()
