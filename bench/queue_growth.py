"""Queue benchmark: does the queue stay cheap as it grows?

On a ``jobs`` table holding 1,000,000 finished jobs and 100,000 jobs that wait on a
backoff (by default), in a fresh database migrated by the code under test:

* **claim latency** (p50, p99, ms) of ``jobs.claim`` with limit 50: with 10 jobs ready
  (a claim that does not fill its batch) and with none ready (an idle poll);
* **HOT share of heartbeats**: 200 leases held, 50 heartbeat rounds; the share of those
  updates of ``jobs`` that PostgreSQL made heap-only (``n_tup_hot_upd / n_tup_upd``,
  from the beating backend's own counters and from ``pg_stat_user_tables``);
* **a drain** of ``--drain-minutes``: a worker (concurrency 200, lease 6 s, so it beats
  every second) runs jobs that take 0.5-4 s, a tenth of which fail once and wait a
  backoff, while a producer enqueues ``--rate`` jobs per second; the HOT share of every
  update of ``jobs`` during it, and the table's and each index's size after it.

It uses only the queue API that the code before and after the job-history work share, so
the same script measures both: run it with the older tree first on ``PYTHONPATH``::

    PYTHONPATH=/path/to/old/src python bench/queue_growth.py --drain-minutes 60
    python bench/queue_growth.py --drain-minutes 60

Figures from a loaded machine are not comparable to anything; docs/benchmarks.md's come from a
quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import machine_load  # bench/ is the script's directory
from kairo_ingest import config, errors, logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import context, core

try:  # the worker's settings module was renamed from config to parameters
    from kairo_ingest.worker import parameters
except ImportError:  # the code before
    from kairo_ingest.worker import config as parameters  # type: ignore[no-redef]

try:  # the attempt endings moved out of queue.jobs with the job history
    from kairo_ingest.queue import endings as _endings

    complete_many: Any = _endings.complete_many
except ImportError:  # the code before
    complete_many = queue_jobs.complete_many  # type: ignore[attr-defined]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
KIND = "growth"
SETTLE = [11.0]  # seconds to let every backend report its counts (--settle-seconds)


def _with_database(dsn: str, name: str) -> str:
    return make_url(dsn).set(database=name).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_database(dsn: str) -> Any:
    name = f"kbench_growth_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(db_engine.plain_dsn(dsn))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield _with_database(dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def load(url: str, finished: int, waiting: int) -> None:
    """The finished and the backoff-waiting jobs, straight into the table (as a bulk
    load; a job that waits is marked deferred where the schema has that column)."""
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        await conn.execute(
            """
            INSERT INTO jobs (kind, brand_id, status, attempts, params, started_at,
                              finished_at, created_at, updated_at, available_at)
            SELECT $1, gen_random_uuid(), 'succeeded', 1, '{}'::jsonb, t, t, t, t, t
            FROM (SELECT now() - random() * interval '10 days' AS t
                  FROM generate_series(1, $2)) AS g
            """,
            KIND,
            finished,
        )
        deferred = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_name = 'jobs' AND column_name = 'deferred'"
        )
        await conn.execute(
            f"""
            INSERT INTO jobs (kind, brand_id, status, attempts, params, available_at,
                              last_error, last_error_kind{", deferred" if deferred else ""})
            SELECT $1, gen_random_uuid(), 'pending', 1, '{{}}'::jsonb,
                   now() + interval '1 hour' + random() * interval '23 hours',
                   'Apify run ended FAILED', 'apify_failed'{", true" if deferred else ""}
            FROM generate_series(1, $2)
            """,
            KIND,
            waiting,
        )
        await conn.execute("VACUUM ANALYZE jobs")
    finally:
        await conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def claim_latency(engine: Any, samples: int, ready: int) -> dict[str, float]:
    timings: list[float] = []
    for _ in range(samples):
        if ready:
            await queue_jobs.enqueue_many(engine, kind=KIND, count=ready)
        started = time.perf_counter()
        leases = await queue_jobs.claim(
            engine, owner="bench", limit=50, lease_seconds=30, kinds=[KIND]
        )
        timings.append((time.perf_counter() - started) * 1000)
        if leases:
            await complete_many(engine, [(lease, None) for lease in leases])
    return {
        "p50_ms": round(percentile(timings, 0.5), 3),
        "p99_ms": round(percentile(timings, 0.99), 3),
        "mean_ms": round(statistics.fmean(timings), 3),
    }


async def updates(url: str) -> tuple[int, int]:
    """(n_tup_upd, n_tup_hot_upd) of jobs from ``pg_stat_user_tables``, read once every
    backend has reported: an idle backend reports its counts within 10 s (PostgreSQL's
    idle stats interval), so wait that long for them to settle."""
    await asyncio.sleep(SETTLE[0])
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'"
        )
        return int(row["n_tup_upd"]), int(row["n_tup_hot_upd"])
    finally:
        await conn.close()


def share(before: tuple[int, int], after: tuple[int, int]) -> dict[str, Any]:
    total, hot = after[0] - before[0], after[1] - before[1]
    return {"updates": total, "hot": hot, "hot_share": round(hot / total, 4) if total else None}


_XACT = sa.text(
    "SELECT pg_stat_get_xact_tuples_updated('jobs'::regclass), "
    "pg_stat_get_xact_tuples_hot_updated('jobs'::regclass)"
)


async def heartbeat_hot_share(engine: Any, url: str, held: int, rounds: int) -> dict[str, Any]:
    """Hold ``held`` leases and beat them ``rounds`` times, each round its own transaction;
    count the updates of ``jobs`` each round made and how many were heap-only, from the
    beating backend's own counters (``pg_stat_get_xact_tuples_*``: exact, not waiting on
    the statistics collector), and also from ``pg_stat_user_tables`` for the whole phase."""
    await queue_jobs.enqueue_many(engine, kind=KIND, count=held)
    leases = await queue_jobs.claim(
        engine, owner="bench-beats", limit=held, lease_seconds=30, kinds=[KIND]
    )
    before = await updates(url)
    total = hot = 0
    async with engine.connect() as conn:
        for _ in range(rounds):
            async with conn.begin():
                start_total, start_hot = (await conn.execute(_XACT)).one()
                await queue_jobs.beat(conn, leases, 30)
                end_total, end_hot = (await conn.execute(_XACT)).one()
            total += end_total - start_total
            hot += end_hot - start_hot
            await asyncio.sleep(0.1)
    figures: dict[str, Any] = {
        "updates": total,
        "hot": hot,
        "hot_share": round(hot / total, 4) if total else None,
        "pg_stat_user_tables": share(before, await updates(url)),
    }
    await complete_many(engine, [(lease, None) for lease in leases])
    return figures


async def drain(engine: Any, url: str, minutes: float, rate: float) -> dict[str, Any]:
    failed_once: set[uuid.UUID] = set()
    rng = random.Random(18)

    async def work(ctx: context.JobContext) -> context.Outcome:
        await asyncio.sleep(rng.uniform(0.5, 4.0))
        if ctx.lease.job_id not in failed_once and rng.random() < 0.1:
            failed_once.add(ctx.lease.job_id)
            return context.Outcome(error=errors.ApifyTransientError("a flaky run"))
        return context.Outcome()

    settings = config.Settings(
        listen_notify=True,
        finished_job_retention_days=0,
        lease_seconds=6,
        retry_base_seconds=5,
        retry_cap_seconds=30,
    )
    worker = core.Worker(
        engine,
        {KIND: work},
        parameters.WorkerConfig.from_settings(
            settings, owner=f"bench-{os.getpid()}", concurrency=200, dsn_for_listen=url
        ),
    )
    before = await updates(url)
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + minutes * 60
    enqueued = 0
    try:
        while time.monotonic() < deadline:
            batch = max(1, int(rate / 10))
            await queue_jobs.enqueue_many(engine, kind=KIND, count=batch)
            enqueued += batch
            await asyncio.sleep(0.1)
    finally:
        worker.request_stop()
        worker.request_stop()
        await running
    figures = share(before, await updates(url))
    figures.update(enqueued=enqueued, beats=worker.lease_keeper.beats)
    return figures


async def sizes(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        table = await conn.fetchrow(
            "SELECT pg_relation_size('jobs') AS heap, pg_indexes_size('jobs') AS indexes, "
            "pg_total_relation_size('jobs') AS total"
        )
        indexes = await conn.fetch(
            "SELECT indexrelid::regclass::text AS name, pg_relation_size(indexrelid) AS bytes "
            "FROM pg_index WHERE indrelid = 'jobs'::regclass ORDER BY 1"
        )
    finally:
        await conn.close()
    mb = 1024 * 1024
    return {
        "heap_mb": round(table["heap"] / mb, 1),
        "indexes_mb": round(table["indexes"] / mb, 1),
        "total_mb": round(table["total"] / mb, 1),
        "per_index_mb": {r["name"]: round(r["bytes"] / mb, 2) for r in indexes},
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "code": os.path.dirname(os.path.dirname(queue_jobs.__file__)),
        "finished": args.finished,
        "waiting": args.waiting,
        "settings": (
            f"claims of 50 (lease 30 s) on an engine pool of 10 + 10, {args.samples} per case; "
            "heartbeats of 200 leases x 50 rounds; drain: worker concurrency 200, lease 6 s, "
            f"retries 5-30 s, LISTEN on, no retention, {args.rate:g} jobs/s for "
            f"{args.drain_minutes:g} min"
        ),
        "machine": machine_load.line(),
    }
    async with fresh_database(args.dsn) as url:
        await migrate.upgrade(url)
        started = time.monotonic()
        await load(url, args.finished, args.waiting)
        report["load_seconds"] = round(time.monotonic() - started, 1)
        engine = db_engine.create(url, pool_size=10, max_overflow=10)
        try:
            report["claim_10_ready"] = await claim_latency(engine, args.samples, ready=10)
            report["claim_idle"] = await claim_latency(engine, args.samples, ready=0)
            report["heartbeats"] = await heartbeat_hot_share(engine, url, 200, 50)
            if args.drain_minutes > 0:
                report["drain"] = await drain(engine, url, args.drain_minutes, args.rate)
        finally:
            await engine.dispose()
        report["sizes"] = await sizes(url)
    return report


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300, help="claims timed per case")
    parser.add_argument("--drain-minutes", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=60.0, help="jobs enqueued per second")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=11.0,
        help="wait before reading pg_stat_user_tables (an idle backend reports within 10 s)",
    )
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    options = parse()
    SETTLE[0] = options.settle_seconds
    logs.configure(level="WARNING", json_format=True)
    result = asyncio.run(main(options))
    if options.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key}: {json.dumps(value)}\n")
