"""Every console filter is served by an index: the plans PostgreSQL chooses on a table of a
million jobs and a million runs hold no sequential scan, and a filter that matches few
rows reads them through its own index.

The rows are made in SQL with ``generate_series`` (a few seconds), then vacuumed and
analyzed; each statement is the console's own text (``console/queries.py``,
``console/actions.py``), explained with the parameters a page would send, never executed.
Plans, not times.

The plans must not depend on chance: ANALYZE reads a random sample of each table, and
autovacuum may analyze it again (another sample) or mark its pages all-visible (cheaper
index-only scans) while the module runs. So autovacuum is off for the three tables, and
one VACUUM ANALYZE with a statistics target of 10,000 (a sample of 3,000,000 rows) reads
every row: the same statistics, and the same plans, on every run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import typing
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.console import actions, queries, run_actions
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import ledger_queries

pytestmark = pytest.mark.slow

JOBS = 1_000_000
RUNS = 1_000_000
BRANDS = 4000
SOURCES = 20_000
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
TABLES = ("jobs", "apify_runs", "source_connections")
WHOLE_TABLE_TARGET = 10_000  # ANALYZE samples 300 rows per unit: 3M, more than any table

SEED = (
    """
    INSERT INTO source_connections (id, brand_id, platform, capability, identifier)
    SELECT md5('s' || g)::uuid, md5('b' || (g % :brands))::uuid,
           (ARRAY['instagram', 'instagram', 'tiktok', 'youtube', 'web'])[g % 5 + 1],
           (ARRAY['posts', 'reels', 'profile_videos', 'channel_videos', 'crawl_pages'])[g % 5 + 1],
           'https://example.com/brand' || g || '/'
    FROM generate_series(0, :sources - 1) AS g
    """,
    """
    INSERT INTO jobs (id, brand_id, status, attempts, created_at, available_at, started_at,
                      finished_at, last_error, last_error_kind)
    SELECT md5('j' || g)::uuid, md5('b' || (g % :brands))::uuid,
           CASE WHEN g % 30 = 0 THEN 'failed' WHEN g % 97 = 0 THEN 'cancelled'
                ELSE 'succeeded' END,
           1,
           timestamptz '2026-12-01' - make_interval(secs => (:jobs - g) * 2.5),
           timestamptz '2026-12-01' - make_interval(secs => (:jobs - g) * 2.5),
           timestamptz '2026-12-01' - make_interval(secs => (:jobs - g) * 2.5),
           timestamptz '2026-12-01' - make_interval(secs => (:jobs - g) * 2.5 - 40),
           CASE WHEN g % 30 = 0 THEN (ARRAY['Apify run FAILED: actor crashed',
                'Apify run TIMED-OUT after 900 s', 'Apify token refused (401)',
                'page fetch failed: HTTP 502 from https://api.apify.com/v2/datasets'])[g % 4 + 1]
           END,
           CASE WHEN g % 30 = 0 THEN (ARRAY['apify_run_failed', 'timeout', 'auth',
                'transient'])[g % 4 + 1] END
    FROM generate_series(0, :jobs - 1) AS g
    """,
    """
    INSERT INTO apify_runs (id, job_id, source_connection_id, brand_id, actor_id, input,
                            apify_run_id, status, created_at, started_at, finished_at,
                            usage_total_usd, account)
    SELECT md5('r' || g)::uuid, md5('j' || (g % :jobs))::uuid, md5('s' || (g % :sources))::uuid,
           md5('b' || ((g % :sources) % :brands))::uuid,
           (ARRAY['apify/instagram-scraper', 'apify/instagram-reel-scraper',
                  'clockworks/tiktok-scraper', 'streamers/youtube-scraper',
                  'apify/website-content-crawler'])[g % 5 + 1],
           '{}'::jsonb, 'run' || g,
           CASE WHEN g % 20 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END,
           timestamptz '2026-12-01' - make_interval(secs => g * 2.5),
           timestamptz '2026-12-01' - make_interval(secs => g * 2.5),
           timestamptz '2026-12-01' - make_interval(secs => g * 2.5 - 60),
           0.01 * (g % 7), CASE WHEN g % 10 = 0 THEN 'tenant-b' ELSE 'default' END
    FROM generate_series(0, :runs - 1) AS g
    """,
)


async def _seed(url: str) -> None:
    """The rows, with the two tables' indexes dropped during the load and built after it
    from their own definitions (much faster than a million index insertions each)."""
    conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=30)
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'; SET synchronous_commit = off")
        definitions = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('jobs', 'apify_runs', 'source_connections') AND indexname NOT LIKE 'pk_%' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
        for row in definitions:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        for table in TABLES:
            await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        params = {"brands": BRANDS, "sources": SOURCES, "jobs": JOBS, "runs": RUNS}
        for statement in SEED:
            for key, value in params.items():
                statement = statement.replace(f":{key}", str(value))
            await conn.execute(statement, timeout=600)
        for row in definitions:
            await conn.execute(row["indexdef"], timeout=600)
        await conn.execute(f"SET default_statistics_target = {WHOLE_TABLE_TARGET}")
        await conn.execute(f"VACUUM (ANALYZE) {', '.join(TABLES)}", timeout=600)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def big_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """One database of a million jobs and a million runs for this module's tests."""
    name = f"kairo_plans_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(_seed(url))
        yield url
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=30)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def big(big_url: str) -> AsyncIterator[sa_async.AsyncEngine]:
    engine = db_engine.create(big_url, pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _plan(
    engine: sa_async.AsyncEngine, statement: sa.TextClause, params: dict[str, Any]
) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("EXPLAIN (FORMAT JSON) " + statement.text), params)
        document = rows.scalar_one()
    if isinstance(document, str):
        document = json.loads(document)
    return _nodes(document[0]["Plan"])


def _seq_scans(nodes: list[dict[str, Any]]) -> list[str]:
    return [n.get("Relation Name", "?") for n in nodes if n["Node Type"] == "Seq Scan"]


def _indexes(nodes: list[dict[str, Any]]) -> set[str]:
    return {n["Index Name"] for n in nodes if "Index Name" in n}


CURSOR = {"after_created_at": NOW - dt.timedelta(days=15), "after_id": uuid.UUID(int=0)}
BRAND = uuid.UUID(hashlib.md5(b"b7").hexdigest())  # a brand with jobs, as seeded
SOURCE = uuid.UUID(hashlib.md5(b"s7").hexdigest())

JOB_FILTERS: list[tuple[str, queries.JobFilter, str]] = [
    ("newest", queries.JobFilter(), "ix_jobs_created_id"),
    ("status", queries.JobFilter(status="failed"), "ix_jobs_status_created_id"),
    ("kind", queries.JobFilter(kind="compile"), "ix_jobs_created_id"),
    ("error kind", queries.JobFilter(error_kind="timeout"), "ix_jobs_error_kind_created_id"),
    ("error words", queries.JobFilter(text="crashed"), "ix_jobs_last_error_words"),
    ("error words, URL", queries.JobFilter(text="api.apify.com 502"), "ix_jobs_last_error_words"),
    ("a word no error has", queries.JobFilter(text="zebra"), "ix_jobs_last_error_words"),
    ("brand", queries.JobFilter(brand_id=BRAND), "ix_jobs_brand_created"),
    (
        "handle's brands",
        queries.JobFilter(brand_ids=(BRAND, uuid.uuid4())),
        "ix_jobs_brand_created",
    ),
    (
        "time range",
        queries.JobFilter(since=NOW - dt.timedelta(days=2), until=NOW - dt.timedelta(days=1)),
        "ix_jobs_created_id",
    ),
    (
        "status and error kind",
        queries.JobFilter(status="failed", error_kind="auth"),
        "ix_jobs_",
    ),
    (
        "status and words",
        queries.JobFilter(status="failed", text="token refused"),
        "ix_jobs_last_error_words",
    ),
    (
        "words in a time range",
        queries.JobFilter(text="crashed", since=NOW - dt.timedelta(days=3)),
        "ix_jobs_last_error_words",
    ),
]

RUN_FILTERS: list[tuple[str, queries.RunFilter, str]] = [
    ("newest", queries.RunFilter(), "ix_apify_runs_created_id"),
    ("status", queries.RunFilter(status="FAILED"), "ix_apify_runs_status_created_id"),
    ("platform", queries.RunFilter(platform="youtube"), "ix_"),
    # One run in five (actor), nine in ten (default): the newest rows hold 51 at once.
    ("actor", queries.RunFilter(actor_id="clockworks/tiktok-scraper"), "ix_apify_runs_"),
    ("account", queries.RunFilter(account="tenant-b"), "ix_apify_runs_account"),
    ("default account", queries.RunFilter(account="default"), "ix_apify_runs_"),
    ("source", queries.RunFilter(source_id=SOURCE), "ix_apify_runs_source_created"),
]


async def test_every_filter_is_served_by_an_index_at_a_million_rows(
    big: sa_async.AsyncEngine,
) -> None:
    problems = []
    for name, job_filter, index in JOB_FILTERS:
        for after in (False, True):
            statement, params = queries.jobs_page_statement(job_filter, after=after)
            params |= {"limit": 51} | (CURSOR if after else {})
            nodes = await _plan(big, statement, params)
            if _seq_scans(nodes) or not any(i.startswith(index) for i in _indexes(nodes)):
                problems.append((f"jobs by {name}", after, _seq_scans(nodes), _indexes(nodes)))
    for name, run_filter, index in RUN_FILTERS:
        for after in (False, True):
            statement, params = queries.runs_page_statement(run_filter, after=after)
            params |= {"limit": 51} | (CURSOR if after else {})
            nodes = await _plan(big, statement, params)
            if _seq_scans(nodes) or not any(i.startswith(index) for i in _indexes(nodes)):
                problems.append((f"runs by {name}", after, _seq_scans(nodes), _indexes(nodes)))
    for handle in (["brand7"], ["example", "brand7"]):
        nodes = await _plan(
            big, queries.BRANDS_BY_HANDLE, {"words": handle, "after": None, "limit": 21}
        )
        if _seq_scans(nodes) or "ix_source_connections_handle_words" not in _indexes(nodes):
            problems.append(("brands by handle", handle, _seq_scans(nodes), _indexes(nodes)))
    assert problems == [], "\n".join(map(str, problems))


async def test_the_workers_page_reads_by_index_at_a_million_rows(
    big: sa_async.AsyncEngine,
) -> None:
    """Held jobs and leases near expiry walk the running rows, long runs the runs that
    have not ended, jobs on their last attempt their own partial index."""
    problems = []
    for statement, params, index in (
        (queries.HELD_JOBS, {"limit": 500}, "ix_jobs_"),
        (queries.LEASES_NEAR_EXPIRY, {"within_seconds": 30.0, "limit": 500}, "ix_jobs_"),
        (queries.LONG_RUNS, {"over_seconds": 3600.0, "limit": 500}, "ix_apify_runs_unended"),
        (queries.LAST_ATTEMPT, {"limit": 500}, "ix_jobs_last_attempt"),
    ):
        nodes = await _plan(big, statement, params)
        if _seq_scans(nodes) or not any(i.startswith(index) for i in _indexes(nodes)):
            problems.append((statement.text[:60], _seq_scans(nodes), _indexes(nodes)))
    assert problems == [], "\n".join(map(str, problems))


async def test_an_abort_of_runs_counts_and_walks_the_runs_not_ended(
    big: sa_async.AsyncEngine,
) -> None:
    """The preview's count and the apply's batches, for every runs filter and for ids."""
    selections = [
        run_actions.Selection(ids=(uuid.uuid4(), uuid.uuid4())),
        run_actions.Selection(params={}, snapshot=NOW),
        run_actions.Selection(params={"status": "RUNNING"}, snapshot=NOW),
        run_actions.Selection(params={"platform": "youtube"}, snapshot=NOW),
        run_actions.Selection(params={"actor": "clockworks/tiktok-scraper"}, snapshot=NOW),
        run_actions.Selection(params={"account": "default"}, snapshot=NOW),
        run_actions.Selection(params={"source": str(SOURCE)}, snapshot=NOW),
    ]
    problems = []
    for selection in selections:
        conditions, params = run_actions.where(selection)
        for statement, extra in (
            (run_actions.count_statement(conditions), {"cap": run_actions.MAX_RUNS + 1}),
            (run_actions.batch_statement(conditions), {"batch": run_actions.BATCH}),
        ):
            nodes = await _plan(big, statement, params | extra)
            if _seq_scans(nodes):
                problems.append((selection, _seq_scans(nodes), _indexes(nodes)))
    assert problems == [], "\n".join(map(str, problems))


class _Recorder:
    """Stands for a connection: keeps each statement and its parameters, returns no rows."""

    def __init__(self) -> None:
        self.statements: list[tuple[sa.TextClause, dict[str, Any]]] = []

    async def execute(self, statement: sa.TextClause, params: dict[str, Any] | None = None) -> Any:
        self.statements.append((statement, params or {}))
        return []


async def test_the_ledger_page_reads_by_index_at_a_million_rows(
    big: sa_async.AsyncEngine,
) -> None:
    """The ledger page's queries are the run ledger's own (db/ledger_queries.py): recorded as the
    page would run them, then explained. Neither big table is scanned; the sources (a
    table of one row per source, 20,000 here) may be hashed whole to join a page of runs
    to them, which PostgreSQL finds cheaper than 200 lookups."""
    recorder = _Recorder()
    conn = typing.cast(sa_async.AsyncConnection, recorder)
    await ledger_queries.unfollowed(conn, limit=200)
    await ledger_queries.live_by_state(conn)
    await ledger_queries.ended_by_state(conn, since=NOW - dt.timedelta(days=1))
    assert len(recorder.statements) == 3
    problems = []
    for statement, params in recorder.statements:
        nodes = await _plan(big, statement, params)
        big_scans = [name for name in _seq_scans(nodes) if name in ("jobs", "apify_runs")]
        if big_scans or not any(i.startswith("ix_apify_runs_") for i in _indexes(nodes)):
            problems.append((statement.text[:80], _seq_scans(nodes), _indexes(nodes)))
    assert problems == [], "\n".join(map(str, problems))


async def test_a_bulk_action_on_a_filter_counts_and_walks_by_index(
    big: sa_async.AsyncEngine,
) -> None:
    """The preview's count, the estimate's brand set and the apply's batches."""
    snapshot = NOW
    for job_filter in (
        queries.JobFilter(text="crashed"),
        queries.JobFilter(error_kind="timeout", status="failed"),
        queries.JobFilter(status="failed", since=NOW - dt.timedelta(days=1)),
    ):
        params: dict[str, Any] = {"eligible": ["failed", "cancelled"], "snapshot": snapshot}
        where = ["status = ANY(:eligible)", *job_filter.where(params), "created_at <= :snapshot"]
        count = sa.text(
            f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {' AND '.join(where)} LIMIT :cap) AS m"
        )
        batch = sa.text(
            f"SELECT id, created_at FROM jobs WHERE {' AND '.join(where)} "
            "AND (created_at, id) > (:after_created_at, :after_id) "
            "ORDER BY created_at, id LIMIT :batch"
        )
        for statement, extra in (
            (count, {"cap": actions.MAX_JOBS + 1}),
            (batch, CURSOR | {"batch": actions.BATCH}),
        ):
            nodes = await _plan(big, statement, params | extra)
            assert _seq_scans(nodes) == [], (job_filter, statement.text)
