"""Console benchmark: each page's and filter's latency on a million jobs and three million
runs, and what twenty refreshing console clients cost the worker's drain rate.

A fresh database (created, migrated and dropped around the run) is filled in SQL with
``generate_series`` (its indexes dropped during the load and built after it): N jobs
(default 1,000,000) over the last 30 days, mostly finished, one failed in thirty with
four kinds of error; a few thousand pending and some running; R Apify runs (default
3,000,000) over 20,000 sources of 4,000 brands on five actors and two accounts, each with
a cost, mostly succeeded; 10,000 audit entries; two registered workers, one holding the
running jobs. Then ``VACUUM ANALYZE``.

**Pages.** Each page is requested through the console's own app in this process (its
real read-only pool of 2, real queries and templates, no socket), W times to warm up,
then K times; p50 and p95 in milliseconds, twice: **cold**, with the console's panel
caches off (every request computes everything), and **as served**, with them on (5 s;
the spend page 60 s).
Baselines in the same run: a ``SELECT 1`` round trip, and (cold) the pages without the
console's indexes (migrations 0003 and 0007), fewer times; a page that the 5 s statement
timeout stops shows as 503.

**Drain.** The worker (the service's settings and connection budget, with the console
on: a shared pool of 9 of 15) drains D no-op jobs on the same database, with the console
served on its loop as ``run`` serves it: first with no console client, then with C
clients (default 20) in another process, each requesting a page over HTTP and then
waiting ``--refresh-seconds`` (default 5, as the overview reloads itself), alternately,
``--drain-rounds`` times each.
It prints each rate, their medians and the ratio.

    python bench/console_pages.py                          # 1,000,000 jobs, 3,000,000 runs
    python bench/console_pages.py --jobs 20000 --runs 60000 --reps 5 --drain-jobs 2000

PostgreSQL at 127.0.0.1:5432 (user postgres, trust) unless ``--dsn`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url

import machine_load  # bench/ is the script's directory
import support_path  # noqa: F401 - tests/ on sys.path, for support
from kairo_ingest import config, logs
from kairo_ingest.console import access
from kairo_ingest.console import server as console_server
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import resources
from kairo_ingest.worker import core, parameters
from support import noop

TOKEN = "bench-console-token-" + "0123456789abcdef" * 2
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CONSOLE_INDEXES = (
    "ix_jobs_created_id",
    "ix_jobs_status_created_id",
    "ix_apify_runs_created_id",
    "ix_apify_runs_status_created_id",
    "ix_apify_runs_source_created",
    "ix_apify_runs_finished",
    "ix_jobs_error_kind_created_id",
    "ix_jobs_last_error_words",
    "ix_apify_runs_actor_created_id",
    "ix_apify_runs_account_created_id",
    "ix_source_connections_platform",
    "ix_source_connections_handle_words",
)

BRANDS = 4000
SOURCES_PER_BRAND = 5
ACTORS = (
    "apify/instagram-scraper",
    "apify/instagram-reel-scraper",
    "clockworks/tiktok-scraper",
    "streamers/youtube-scraper",
    "apify/website-content-crawler",
)

SEED = [
    # Brands are uuids derived from a number, so jobs, sources and runs agree on them.
    """
    INSERT INTO source_connections (id, brand_id, platform, capability, identifier)
    SELECT md5('s' || g)::uuid, md5('b' || (g % :brands))::uuid,
           (ARRAY['instagram', 'instagram', 'tiktok', 'youtube', 'web'])[g % 5 + 1],
           (ARRAY['posts', 'reels', 'profile_videos', 'channel_videos', 'crawl_pages'])[g % 5 + 1],
           '@brand' || (g % :brands) || '_' || g
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
           CASE WHEN g % 30 = 0 THEN (ARRAY['Apify run FAILED: actor crashed',
                'Apify run TIMED-OUT after 900 s', 'Apify token refused (401)',
                'page fetch failed: HTTP 502 from https://api.apify.com/v2/datasets'])[g % 4 + 1]
           END,
           CASE WHEN g % 30 = 0 THEN (ARRAY['apify_run_failed', 'timeout', 'auth',
                'transient'])[g % 4 + 1] END
    FROM generate_series(:active, :jobs - 1) AS g
    """,
    # Active jobs: one per brand at most (uq_jobs_active_per_brand); a few running.
    """
    INSERT INTO jobs (id, brand_id, status, created_at, available_at, lease_owner,
                      lease_token, lease_expires_at, started_at, attempts)
    SELECT md5('j' || g)::uuid, md5('b' || g)::uuid,
           CASE WHEN g < :running THEN 'running' ELSE 'pending' END,
           now() - make_interval(secs => g), now() + interval '1 day',
           CASE WHEN g < :running THEN 'bench' END,
           CASE WHEN g < :running THEN gen_random_uuid() END,
           CASE WHEN g < :running THEN now() + interval '1 day' END,
           CASE WHEN g < :running THEN now() END,
           CASE WHEN g < :running THEN 1 ELSE 0 END
    FROM generate_series(0, :active - 1) AS g
    """,
    # Runs: run g belongs to source g % S and to a finished job; some failed, some live.
    """
    INSERT INTO apify_runs (id, job_id, source_connection_id, brand_id, actor_id, input,
                            apify_run_id, dataset_id, status, created_at, started_at,
                            finished_at, raw_item_count, normalized_item_count, error_kind,
                            error_summary, account, usage_total_usd)
    SELECT md5('r' || g)::uuid,
           md5('j' || (:active + (g * 5) % (:jobs - :active)))::uuid,
           md5('s' || (g % :sources))::uuid,
           md5('b' || ((g % :sources) % :brands))::uuid,
           (ARRAY['apify/instagram-scraper', 'apify/instagram-reel-scraper',
                  'clockworks/tiktok-scraper', 'streamers/youtube-scraper',
                  'apify/website-content-crawler'])[(g % :sources) % 5 + 1],
           '{}'::jsonb, 'run' || g, 'ds' || g,
           CASE WHEN g < :in_flight THEN 'RUNNING' WHEN g % 20 = 0 THEN 'FAILED'
                WHEN g % 53 = 0 THEN 'TIMED-OUT' ELSE 'SUCCEEDED' END,
           now() - make_interval(secs => g * (30 * 86400.0 / :runs)),
           now() - make_interval(secs => g * (30 * 86400.0 / :runs)) + interval '2 s',
           CASE WHEN g >= :in_flight THEN now() - make_interval(secs => g * (30 * 86400.0 / :runs))
                + make_interval(secs => 5 + g % 600) END,
           CASE WHEN g >= :in_flight THEN 20 + g % 30 END,
           CASE WHEN g >= :in_flight THEN 15 + g % 30 END,
           CASE WHEN g % 20 = 0 AND g >= :in_flight THEN 'apify_run_failed' END,
           CASE WHEN g % 20 = 0 AND g >= :in_flight THEN 'Actor run FAILED' END,
           CASE WHEN g % 10 = 0 THEN 'tenant-b' ELSE 'default' END,
           CASE WHEN g >= :in_flight THEN 0.001 * (g % 97) END
    FROM generate_series(0, :runs - 1) AS g
    """,
    # The worker that holds the running jobs above, and one that stopped: the workers page
    # lists both, the first with its jobs.
    """
    INSERT INTO workers (owner, hostname, pid, version, concurrency, heartbeat_interval_seconds,
                         started_at, last_beat_at, stopped_at)
    VALUES ('bench', 'bench-host', 1, 'bench', :running, 10.0, now() - interval '1 hour',
            now(), NULL),
           ('bench-old', 'bench-host', 2, 'bench', :running, 10.0, now() - interval '2 hours',
            now() - interval '1 hour', now() - interval '1 hour')
    """,
    """
    INSERT INTO console_audit (id, created_at, finished_at, actor, via, client, action, target,
                               selection, matched, changed, unchanged, state)
    SELECT md5('a' || g)::uuid, now() - make_interval(mins => g), now() - make_interval(mins => g),
           'token:0123abcd', 'session', '127.0.0.1', 'retry', 'jobs', '{"ids": []}', 1, 1, 0,
           'done'
    FROM generate_series(1, 10000) AS g
    """,
]


def _admin_url(dsn: str, name: str) -> str:
    return make_url(dsn).set(database=name).render_as_string(hide_password=False)


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(dsn), timeout=10)
    try:
        await conn.execute(statement, timeout=3600)
    finally:
        await conn.close()


def _uuid(text: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(text.encode()).hexdigest())


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
        await conn.execute("SET maintenance_work_mem = '256MB'; SET synchronous_commit = off")
        # Built after the load from their own definitions: far faster than a few million
        # insertions into each of them.
        definitions = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
            "('jobs', 'apify_runs', 'source_connections', 'console_audit') "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
        for row in definitions:
            await conn.execute(f'DROP INDEX "{row["indexname"]}"')
        for statement in SEED:
            text = statement
            for key, value in params.items():
                text = text.replace(f":{key}", str(value))
            await conn.execute(text, timeout=3600)
        for row in definitions:
            await conn.execute(row["indexdef"], timeout=3600)
        await conn.execute("VACUUM ANALYZE", timeout=3600)
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
        day = await conn.fetchval("SELECT ((now() AT TIME ZONE 'UTC') - interval '3 days')::date")
    finally:
        await conn.close()
    cursor = "{}_{}".format
    return {
        "seconds": seconds,
        "job_cursor": cursor(middle_job["created_at"].isoformat(), middle_job["id"]),
        "run_cursor": cursor(middle_run["created_at"].isoformat(), middle_run["id"]),
        "job": failed_job,
        "brand": _uuid("b7"),  # a brand with jobs
        "source": _uuid("s7"),
        "brand_cursor": middle_brand,
        "day": day.isoformat(),
    }


def pages(info: dict[str, Any]) -> list[tuple[str, str]]:
    q = httpx.QueryParams
    return [
        ("overview", "/"),
        ("jobs", "/jobs"),
        ("jobs, status=failed", "/jobs?status=failed"),
        ("jobs, kind=compile", "/jobs?kind=compile"),
        ("jobs, error kind", "/jobs?error_kind=timeout"),
        ("jobs, error words", f"/jobs?{q(q='crashed')}"),
        ("jobs, rare error word", f"/jobs?{q(q='zebra')}"),
        ("jobs, failed + words", f"/jobs?{q(status='failed', q='token refused')}"),
        ("jobs, brand", f"/jobs?{q(brand=str(info['brand']))}"),
        ("jobs, brand handle", f"/jobs?{q(handle='brand7_7')}"),
        ("jobs, one day", f"/jobs?{q(since=info['day'], until=info['day'] + 'T23:59')}"),
        ("jobs, middle page", f"/jobs?{q(after=info['job_cursor'])}"),
        ("jobs, failed, middle", f"/jobs?{q(status='failed', after=info['job_cursor'])}"),
        ("job page", f"/jobs/{info['job']}"),
        ("runs", "/runs"),
        ("runs, status=FAILED", "/runs?status=FAILED"),
        ("runs, platform", "/runs?platform=youtube"),
        ("runs, actor", f"/runs?{q(actor='clockworks/tiktok-scraper')}"),
        ("runs, account", "/runs?account=tenant-b"),
        ("runs, source", f"/runs?{q(source=str(info['source']))}"),
        ("runs, middle page", f"/runs?{q(after=info['run_cursor'])}"),
        ("brands", "/brands"),
        ("brands, middle", f"/brands?{q(after=str(info['brand_cursor']))}"),
        ("brands, handle", f"/brands?{q(handle='brand7_7')}"),
        ("spend", "/spend"),
        ("spend, one day", f"/spend?{q(day=info['day'])}"),
        ("audit", "/audit"),
        ("workers", "/workers"),
        ("workers, runs over a minute", f"/workers?{q(runs_over='60', lease_within='86400')}"),
        ("ledger", "/ledger"),
        ("ledger, since a day", f"/ledger?{q(since=info['day'])}"),
        ("bulk retry preview", "POST /jobs/bulk"),
    ]


BULK_PREVIEW = {"action": "retry", "scope": "matching", "filter": {"error_kind": "timeout"}}


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


def _settings(url: str, **extra: Any) -> config.Settings:
    return config.load(database_url=url, apify_token=None, console_token=TOKEN, **extra)


async def measure(
    url: str, info: dict[str, Any], *, reps: int, warm: int, cached: bool, strict: bool = True
) -> dict[str, tuple[float, float, str]]:
    engine = db_engine.create(url, pool_size=1, max_overflow=0)
    app = console_server.app(_settings(url), engine)
    if not cached:
        app.pages.cache = access.Cache(ttl_seconds=0)
        app.pages.spend_cache = access.Cache(ttl_seconds=0)
    out: dict[str, tuple[float, float, str]] = {}
    try:

        async def select_one() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        samples = await _time(select_one, warm, reps)
        out["SELECT 1"] = (statistics.median(samples), _p95(samples), "")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1:8081",
            headers=BEARER | {"Accept": "text/html"},
            timeout=60,
        ) as http:
            for name, path in pages(info):
                codes: set[int] = set()

                async def get(path: str = path, codes: set[int] = codes) -> None:
                    if path.startswith("POST "):
                        response = await http.post(
                            path[5:], json=BULK_PREVIEW, headers={"Accept": "application/json"}
                        )
                    else:
                        response = await http.get(path)
                    codes.add(response.status_code)
                    if strict:
                        assert response.status_code == 200, (path, response.status_code)

                # The spend page computed from scratch takes seconds at millions of runs.
                heavy = not cached and path.startswith("/spend")
                samples = await _time(
                    get, min(warm, 1) if heavy else warm, min(reps, 3) if heavy else reps
                )
                note = "" if codes == {200} else "/".join(str(c) for c in sorted(codes))
                if heavy:
                    note = (note + " " if note else "") + f"{min(reps, 3)} requests"
                out[name] = (statistics.median(samples), _p95(samples), note)
    finally:
        await app.aclose()
        await engine.dispose()
    return out


# --- the drain, with and without refreshing console clients ------------------------------


async def clients(base: str, n: int, refresh_seconds: float) -> None:
    """``--clients``: n browsers refreshing console pages until SIGTERM; prints a count."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    paths = ["/", "/jobs", "/jobs?status=failed", "/runs", "/spend", "/brands", "/audit"]
    done = {"requests": 0, "errors": 0}

    async def one(i: int) -> None:
        async with httpx.AsyncClient(base_url=base, headers=BEARER, timeout=30) as http:
            k = i
            while not stop.is_set():
                try:
                    response = await http.get(paths[k % len(paths)])
                    done["requests" if response.status_code == 200 else "errors"] += 1
                except httpx.HTTPError:
                    done["errors"] += 1
                k += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=refresh_seconds)

    print("ready", flush=True)
    await asyncio.gather(*(one(i) for i in range(n)))
    print(json.dumps(done), flush=True)


async def drain_rates(
    url: str, *, jobs: int, rounds: int, n_clients: int, refresh_seconds: float
) -> dict[str, list[float]]:
    """Jobs per second of `run`'s worker, its console served on its loop, with and without
    console clients in another process, alternately."""
    settings = _settings(url, console_port=0, listen_notify=True, finished_job_retention_days=0)
    budget = resources.ConnectionBudget.of(settings)
    engine = db_engine.create(url, pool_size=budget.pool, max_overflow=0)
    console = console_server.build(settings, engine, host="127.0.0.1", port=0)
    task, base = await console_server.start(console)
    rates: dict[str, list[float]] = {"none": [], "clients": []}
    try:
        for _ in range(rounds):
            for mode in ("none", "clients"):
                await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=jobs)
                proc = None
                if mode == "clients":
                    proc = await asyncio.create_subprocess_exec(
                        sys.executable,
                        os.path.abspath(__file__),
                        "--clients",
                        base.rstrip("/"),
                        "--n-clients",
                        str(n_clients),
                        "--refresh-seconds",
                        str(refresh_seconds),
                        stdout=asyncio.subprocess.PIPE,
                    )
                    assert proc.stdout is not None
                    assert (await proc.stdout.readline()).strip() == b"ready"
                    await asyncio.sleep(2)  # every client has made its first requests
                worker_config = parameters.WorkerConfig.from_settings(
                    settings, owner=f"bench-{mode}", concurrency=50, dsn_for_listen=url
                )
                worker = core.Worker(engine, noop.HANDLERS, worker_config)
                started = time.perf_counter()
                await worker.run(drain=True)
                seconds = time.perf_counter() - started
                rates[mode].append(jobs / seconds)
                extra = ""
                if proc is not None:
                    proc.send_signal(signal.SIGTERM)
                    out, _ = await proc.communicate()
                    extra = f" clients: {out.decode().strip().splitlines()[-1]}"
                print(f"  drain {mode:8} {jobs / seconds:8.0f} jobs/s{extra}", flush=True)
    finally:
        await console_server.stop(console, task)
        await engine.dispose()
    return rates


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3_000_000)
    parser.add_argument("--reps", type=int, default=40, help="timed requests per page")
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--baseline-reps", type=int, default=3, help="without the indexes")
    parser.add_argument("--drain-jobs", type=int, default=30_000)
    parser.add_argument("--drain-rounds", type=int, default=4)
    parser.add_argument("--n-clients", type=int, default=20)
    parser.add_argument(
        "--refresh-seconds", type=float, default=5.0, help="as the overview reloads itself"
    )
    parser.add_argument(
        "--only", choices=("pages", "drain"), help="run one half of the benchmark (default: both)"
    )
    parser.add_argument("--clients", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        await clients(args.clients, args.n_clients, args.refresh_seconds)
        return
    logs.configure(level="WARNING", json_format=True)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    print(
        f"settings: console as `run` builds it (read-only pool of 2, panel caches); "
        f"{args.reps} requests per page after {args.warm} warm-ups, {args.baseline_reps} "
        f"without the indexes; drain of {args.drain_jobs:,} no-op jobs x {args.drain_rounds} "
        f"rounds, concurrency 50, {args.n_clients} clients every {args.refresh_seconds:g} s; "
        f"{machine_load.line()}",
        flush=True,
    )
    name = f"kairo_bench_console_{uuid.uuid4().hex[:8]}"
    await _admin(args.dsn, f'CREATE DATABASE "{name}"')
    url = _admin_url(args.dsn, name)
    try:
        await migrate.upgrade(url)
        info = await seed(url, jobs=args.jobs, runs=args.runs)
        print(f"seeded {args.jobs:,} jobs and {args.runs:,} runs in {info['seconds']:.1f}s")
        cold = served = without = {}
        rates: dict[str, list[float]] = {}
        if args.only != "drain":
            cold = await measure(url, info, reps=args.reps, warm=args.warm, cached=False)
            served = await measure(url, info, reps=args.reps, warm=args.warm, cached=True)
        if args.only != "pages":
            print(
                f"\ndrain of {args.drain_jobs:,} no-op jobs, {args.drain_rounds} rounds, "
                f"{args.n_clients} clients refreshing every {args.refresh_seconds:g} s:"
            )
            rates = await drain_rates(
                url,
                jobs=args.drain_jobs,
                rounds=args.drain_rounds,
                n_clients=args.n_clients,
                refresh_seconds=args.refresh_seconds,
            )
        if args.only != "drain":
            await _admin(url, "DROP INDEX " + ", ".join(CONSOLE_INDEXES))
            await _admin(url, "ANALYZE")
            without = await measure(
                url, info, reps=args.baseline_reps, warm=1, cached=False, strict=False
            )
    finally:
        await _admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if cold:
        print(
            f"\n{'page':24} {'cold p50':>9} {'p95 ms':>8}   {'served p50':>10} {'p95':>7}"
            f"   {'no index p50':>12} {'p95':>8}"
        )
        for page, (p50, p95, _note) in cold.items():
            s50, s95, _ = served[page]
            b50, b95, note = without.get(page, (float("nan"), float("nan"), ""))
            print(
                f"{page:24} {p50:9.1f} {p95:8.1f}   {s50:10.1f} {s95:7.1f}   "
                f"{b50:12.1f} {b95:8.1f}" + (f" ({note})" if note else "")
            )
        worst_cold = max(p95 for page, (_p50, p95, _n) in cold.items() if page != "SELECT 1")
        worst_served = max(p95 for page, (_p50, p95, _n) in served.items() if page != "SELECT 1")
        print(
            f"\nslowest page p95: {worst_cold:.1f} ms cold, {worst_served:.1f} ms as served "
            f"({args.reps} requests per page)"
        )
    if rates:
        quiet, busy = statistics.median(rates["none"]), statistics.median(rates["clients"])
        print(
            f"drain rate, median of {args.drain_rounds}: {quiet:.0f} jobs/s without console "
            f"clients, {busy:.0f} jobs/s with {args.n_clients}; ratio {busy / quiet:.3f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
