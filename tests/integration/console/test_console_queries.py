"""Keyset pages visit every row exactly once, and the pages' queries use their indexes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.console import queries

WHEN = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


async def _insert_jobs(engine: sa_async.AsyncEngine, n: int) -> set[uuid.UUID]:
    """n finished jobs, all with the same created_at: only the id breaks the ties."""
    async with engine.begin() as conn:
        rows = await conn.execute(
            sa.text(
                "INSERT INTO jobs (status, created_at, finished_at, started_at) "
                "SELECT CASE WHEN g % 3 = 0 THEN 'failed' ELSE 'succeeded' END, "
                "timestamptz '2026-11-01 00:00:00+00', now(), now() "
                "FROM generate_series(1, :n) AS g RETURNING id"
            ),
            {"n": n},
        )
        return set(rows.scalars())


async def test_jobs_keyset_pages_visit_every_job_once_despite_equal_timestamps(
    engine: sa_async.AsyncEngine,
) -> None:
    expected = await _insert_jobs(engine, 137)
    seen: list[uuid.UUID] = []
    after = None
    pages = 0
    while True:
        async with engine.connect() as conn:
            rows, after = await queries.jobs_page(conn, queries.JobFilter(), after=after, limit=20)
        seen += [r["id"] for r in rows]
        pages += 1
        if after is None:
            break
        after = queries.Cursor.decode(after.encode())  # through the URL form and back
    assert pages == 7
    assert len(seen) == len(set(seen)) == 137
    assert set(seen) == expected
    assert seen == sorted(seen, reverse=True)  # equal created_at: id descending


async def test_filtered_pages_only_show_matching_jobs(engine: sa_async.AsyncEngine) -> None:
    await _insert_jobs(engine, 30)
    async with engine.connect() as conn:
        rows, after = await queries.jobs_page(
            conn, queries.JobFilter(status="failed", kind="compile"), after=None, limit=50
        )
    assert after is None
    assert len(rows) == 10
    assert {r["status"] for r in rows} == {"failed"}


async def _plan(
    engine: sa_async.AsyncEngine, statement: sa.TextClause, params: dict[str, Any]
) -> str:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SET enable_seqscan = off"))
        rows = await conn.execute(sa.text("EXPLAIN " + statement.text), params)
        return "\n".join(r[0] for r in rows)


def _keyset(
    built: tuple[sa.TextClause, dict[str, Any]],
) -> tuple[sa.TextClause, dict[str, Any]]:
    statement, params = built
    return statement, params | {"limit": 51, "after_created_at": WHEN, "after_id": uuid.uuid4()}


@pytest.mark.parametrize(
    ("statement", "params", "index"),
    [
        (
            *_keyset(queries.jobs_page_statement(queries.JobFilter(), after=True)),
            "ix_jobs_created_id",
        ),
        (
            *_keyset(queries.jobs_page_statement(queries.JobFilter(status="failed"), after=True)),
            "ix_jobs_status_created_id",
        ),
        (
            *_keyset(queries.runs_page_statement(queries.RunFilter(), after=True)),
            "ix_apify_runs_created_id",
        ),
        (
            *_keyset(queries.runs_page_statement(queries.RunFilter(status="FAILED"), after=True)),
            "ix_apify_runs_status_created_id",
        ),
        (
            queries.RUN_DURATIONS,
            {"edges": [0.0, 10.0], "window_seconds": 60.0},
            "ix_apify_runs_finished",
        ),
        (
            queries.BRAND_SOURCES,
            {"brand_ids": [uuid.uuid4()]},
            "ix_apify_runs_source_created",
        ),
    ],
)
async def test_page_queries_use_the_console_indexes(
    engine: sa_async.AsyncEngine, statement: sa.TextClause, params: dict[str, Any], index: str
) -> None:
    plan = await _plan(engine, statement, params)
    assert index in plan, plan
