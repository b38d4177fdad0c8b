"""Console benchmark: each page's latency on a database with a million jobs.

A fresh database (created, migrated and dropped around the run) is filled in SQL with
``generate_series``: N jobs (default 1,000,000) over the last 30 days, mostly finished,
a few thousand pending and some running, one failed in thirty; R Apify runs (default
200,000) over 20,000 sources of 4,000 brands, mostly succeeded, some failed, a hundred
in flight. Then ``VACUUM ANALYZE``, as autovacuum would have done.

Each page is requested through the console's own ASGI app in this process (the real
queries and the real templates, no socket), W times to warm up and then K times; the
figures are p50 and p95 in milliseconds. Two baselines in the same run:

* ``SELECT 1``: one round trip to PostgreSQL through the same engine, the floor.
* ``no index``: the same pages after dropping the console's indexes (migration 0003),
  fewer times, to show what the indexes buy.

    python bench/console_pages.py                          # 1,000,000 jobs, 200,000 runs
    python bench/console_pages.py --jobs 20000 --runs 4000 --reps 5

PostgreSQL at 127.0.0.1:5432 (user postgres, trust) unless ``--dsn`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url

from kairo_ingest import config, logs
from kairo_ingest.console import server as console_server
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate

CONSOLE_INDEXES = (
    "ix_jobs_created_id",
    "ix_jobs_status_created_id",
    "ix_apify_runs_created_id",
    "ix_apify_runs_status_created_id",
    "ix_apify_runs_source_created",
    "ix_apify_runs_finished",
)

BRANDS = 4000
SOURCES_PER_BRAND = 5

SEED = [
    # Brands are uuids derived from a number, so jobs, sources and runs agree on them.
    """
    INSERT INTO source_connections (id, brand_id, platform, capability, identifier)
    SELECT md5('s' || g)::uuid, md5('b' || (g % :brands))::uuid,
           (ARRAY['instagram', 'instagram', 'tiktok', 'youtube', 'web'])[g % 5 + 1],
           (ARRAY['posts', 'reels', 'profile_videos', 'channel_videos', 'crawl_pages'])[g % 5 + 1],
           '@brand' || g
    FROM generate_series(0, :sources - 1) AS g
    """,
    # Finished jobs, oldest first; job g was created (g / N) of 30 days ago.
    """
    INSERT INTO jobs (id, brand_id, status, attempts, created_at, available_at, started_at,
                      finished_at, last_error, last_error_kind)
    SELECT md5('j' || g)::uuid, md5('b' || (g % :brands))::uuid,
           CASE WHEN g % 30 = 0 THEN 'failed' WHEN g % 97 = 0 THEN 'cancelled'
                ELSE 'succeeded' END,
           1,
           now() - make_interval(secs => (:jobs - g) * (30 * 86400.0 / :jobs)),
           now() - make_interval(secs => (:jobs - g) * (30 * 86400.0 / :jobs)),
           now() - make_interval(secs => (:jobs - g) * (30 * 86400.0 / :jobs)) + interval '1 s',
           now() - make_interval(secs => (:jobs - g) * (30 * 86400.0 / :jobs)) + interval '40 s',
           CASE WHEN g % 30 = 0 THEN 'Apify run FAILED: actor crashed' END,
           CASE WHEN g % 30 = 0 THEN (ARRAY['apify_run_failed', 'timeout', 'auth'])[g % 3 + 1]
           END
    FROM generate_series(:active, :jobs - 1) AS g
    """,
    # Active jobs: one per brand at most (uq_jobs_active_per_brand); a few running.
    """
    INSERT INTO jobs (id, brand_id, status, created_at, available_at, lease_owner,
                      lease_token, lease_expires_at, started_at, attempts)
    SELECT md5('j' || g)::uuid, md5('b' || g)::uuid,
           CASE WHEN g < :running THEN 'running' ELSE 'pending' END,
           now() - make_interval(secs => g), now() - make_interval(secs => g),
           CASE WHEN g < :running THEN 'bench' END,
           CASE WHEN g < :running THEN gen_random_uuid() END,
           CASE WHEN g < :running THEN now() + interval '1 minute' END,
           CASE WHEN g < :running THEN now() END,
           CASE WHEN g < :running THEN 1 ELSE 0 END
    FROM generate_series(0, :active - 1) AS g
    """,
    # Runs: run g belongs to source g % S and to a finished job; some failed, some live.
    """
    INSERT INTO apify_runs (id, job_id, source_connection_id, brand_id, actor_id, input,
                            apify_run_id, dataset_id, status, created_at, started_at,
                            finished_at, raw_item_count, normalized_item_count, error_kind,
                            error_summary)
    SELECT md5('r' || g)::uuid,
           md5('j' || (:active + (g * 5) % (:jobs - :active)))::uuid,
           md5('s' || (g % :sources))::uuid,
           md5('b' || ((g % :sources) % :brands))::uuid,
           'apify/instagram-scraper', '{}'::jsonb,
           'run' || g, 'ds' || g,
           CASE WHEN g < :in_flight THEN 'RUNNING' WHEN g % 20 = 0 THEN 'FAILED'
                WHEN g % 53 = 0 THEN 'TIMED-OUT' ELSE 'SUCCEEDED' END,
           now() - make_interval(secs => g * (30 * 86400.0 / :runs)),
           now() - make_interval(secs => g * (30 * 86400.0 / :runs)) + interval '2 s',
           CASE WHEN g >= :in_flight THEN now() - make_interval(secs => g * (30 * 86400.0 / :runs))
                + make_interval(secs => 5 + g % 600) END,
           CASE WHEN g >= :in_flight THEN 20 + g % 30 END,
           CASE WHEN g >= :in_flight THEN 15 + g % 30 END,
           CASE WHEN g % 20 = 0 AND g >= :in_flight THEN 'apify_run_failed' END,
           CASE WHEN g % 20 = 0 AND g >= :in_flight THEN 'Actor run FAILED' END
    FROM generate_series(0, :runs - 1) AS g
    """,
]


def _admin_url(dsn: str, name: str) -> str:
    return make_url(dsn).set(database=name).render_as_string(hide_password=False)


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(dsn), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def seed(url: str, *, jobs: int, runs: int) -> dict[str, Any]:
    sources = BRANDS * SOURCES_PER_BRAND
    active = min(3000, BRANDS, jobs // 10)
    params = {
        "brands": BRANDS,
        "sources": sources,
        "jobs": jobs,
        "active": active,
        "running": min(50, active),
        "runs": runs,
        "in_flight": min(100, runs),
    }
    conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=10)
    try:
        started = time.perf_counter()
        for statement in SEED:
            text = statement
            for key, value in params.items():
                text = text.replace(f":{key}", str(value))
            await conn.execute(text)
        await conn.execute("VACUUM ANALYZE")
        seconds = time.perf_counter() - started
        middle_job = await conn.fetchrow(
            "SELECT created_at, id FROM jobs ORDER BY created_at, id OFFSET $1 LIMIT 1", jobs // 2
        )
        middle_run = await conn.fetchrow(
            "SELECT created_at, id FROM apify_runs ORDER BY created_at, id OFFSET $1 LIMIT 1",
            runs // 2,
        )
        failed_job = await conn.fetchval("SELECT id FROM jobs WHERE status = 'failed' LIMIT 1")
        middle_brand = await conn.fetchval(
            "SELECT DISTINCT brand_id FROM source_connections ORDER BY 1 OFFSET $1 LIMIT 1",
            BRANDS // 2,
        )
    finally:
        await conn.close()
    cursor = "{}_{}".format
    return {
        "seconds": seconds,
        "job_cursor": cursor(middle_job["created_at"].isoformat(), middle_job["id"]),
        "run_cursor": cursor(middle_run["created_at"].isoformat(), middle_run["id"]),
        "job": failed_job,
        "brand": uuid.UUID(hex=hashlib.md5(b"b7").hexdigest()),  # a brand with jobs
        "brand_cursor": middle_brand,
    }


def pages(info: dict[str, Any]) -> list[tuple[str, str]]:
    q = httpx.QueryParams
    return [
        ("overview", "/"),
        ("jobs", "/jobs"),
        ("jobs, status=failed", "/jobs?status=failed"),
        ("jobs, brand", f"/jobs?{q(brand=str(info['brand']))}"),
        ("jobs, kind=compile", "/jobs?kind=compile"),
        ("jobs, middle page", f"/jobs?{q(after=info['job_cursor'])}"),
        ("jobs, failed, middle", f"/jobs?{q(status='failed', after=info['job_cursor'])}"),
        ("job page", f"/jobs/{info['job']}"),
        ("runs", "/runs"),
        ("runs, status=FAILED", "/runs?status=FAILED"),
        ("runs, middle page", f"/runs?{q(after=info['run_cursor'])}"),
        ("brands", "/brands"),
        ("brands, middle", f"/brands?{q(after=str(info['brand_cursor']))}"),
    ]


async def _time(call: Callable[[], Awaitable[None]], warm: int, reps: int) -> list[float]:
    for _ in range(warm):
        await call()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def measure(
    url: str, info: dict[str, Any], *, reps: int, warm: int
) -> dict[str, tuple[float, float]]:
    settings = config.load(database_url=url, apify_token=None)
    engine = db_engine.create(url, pool_size=4)
    app = console_server.app(settings, engine)
    out: dict[str, tuple[float, float]] = {}
    try:

        async def select_one() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        samples = await _time(select_one, warm, reps)
        out["SELECT 1"] = (statistics.median(samples), _p95(samples))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8081"
        ) as http:
            for name, path in pages(info):

                async def get(path: str = path) -> None:
                    response = await http.get(path)
                    assert response.status_code == 200, (path, response.status_code)

                samples = await _time(get, warm, reps)
                out[name] = (statistics.median(samples), _p95(samples))
    finally:
        await engine.dispose()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=40, help="timed requests per page")
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--baseline-reps", type=int, default=5, help="without the indexes")
    args = parser.parse_args()
    logs.configure(level="WARNING", json_format=True)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    name = f"kairo_bench_console_{uuid.uuid4().hex[:8]}"
    await _admin(args.dsn, f'CREATE DATABASE "{name}"')
    url = _admin_url(args.dsn, name)
    try:
        await migrate.upgrade(url)
        info = await seed(url, jobs=args.jobs, runs=args.runs)
        print(f"seeded {args.jobs:,} jobs and {args.runs:,} runs in {info['seconds']:.1f}s")
        with_index = await measure(url, info, reps=args.reps, warm=args.warm)
        await _admin(url, "DROP INDEX " + ", ".join(CONSOLE_INDEXES))
        await _admin(url, "ANALYZE")
        without = await measure(url, info, reps=args.baseline_reps, warm=1)
    finally:
        await _admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"\n{'page':24} {'p50 ms':>8} {'p95 ms':>8}   {'no index p50':>12} {'p95':>8}")
    for page, (p50, p95) in with_index.items():
        b50, b95 = without.get(page, (float("nan"), float("nan")))
        print(f"{page:24} {p50:8.1f} {p95:8.1f}   {b50:12.1f} {b95:8.1f}")
    worst = max(p95 for page, (_p50, p95) in with_index.items() if page != "SELECT 1")
    print(f"\nslowest page p95: {worst:.1f} ms ({args.reps} requests per page)")


if __name__ == "__main__":
    asyncio.run(main())
