"""Budget benchmark: one Apify account's run budget shared by several worker processes.

Starts the Apify simulator in this process as one account limited to ``--limit``
concurrent runs (10), enqueues ``--brands`` x ``--sources`` runs (100 x 3 = 300) of
``--run-seconds`` each (3), and runs ``--workers`` real ``kairo-ingest run`` processes
(3) at ``--concurrency`` (100) each against it, with KAIRO_APIFY_ACCOUNT_MAX_CONCURRENT_RUNS
set to the same limit. After ``--kill-after`` seconds one worker is killed with SIGKILL;
its jobs come back when their leases expire (``--lease-seconds``).

It reports the most runs the simulator saw in flight at once (must be <= the limit),
the limit refusals it answered, the slots still counted once every job ended (leaked:
must be 0) and the dead slot rows left behind, and the wall time against the ideal
(runs x run seconds / limit).

Usage (PostgreSQL at 127.0.0.1:5432, user postgres, trust)::

    python bench/budget.py --brands 100 --sources 3 --limit 10 --run-seconds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

import machine_load  # bench/ is the script's directory
from kairo_apify_sim import server as sim_server
from kairo_ingest import config
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate, run_slots, sources
from kairo_ingest.queue import jobs as queue_jobs

TOKEN = "apify_api_benchBUDGETbenchBUDGET0001"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--brands", type=int, default=100)
    p.add_argument("--sources", type=int, default=3, help="sources (runs) per brand")
    p.add_argument("--run-seconds", type=float, default=3.0)
    p.add_argument("--kill-after", type=float, default=None, help="default: a third of ideal")
    p.add_argument("--no-kill", action="store_true", help="kill no worker (for comparison)")
    p.add_argument("--lease-seconds", type=float, default=10.0, help="service: 60")
    p.add_argument("--reap-seconds", type=float, default=1.0, help="service: 10")
    p.add_argument("--snooze-seconds", type=float, default=2.0, help="service: 60")
    p.add_argument("--timeout", type=float, default=900.0)
    return p.parse_args()


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(dsn))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _seed(url: str, args: argparse.Namespace) -> None:
    engine = db_engine.create(url, pool_size=2)
    try:
        for b in range(args.brands):
            brand = uuid.uuid4()
            for s in range(args.sources):
                await sources.add(
                    engine,
                    brand_id=brand,
                    platform="instagram",
                    capability="posts",
                    identifier=f"@bench{b}x{s}",
                )
            await queue_jobs.enqueue(
                engine, kind="compile", brand_id=brand, params={"force_refresh": True}
            )
    finally:
        await engine.dispose()


async def _status(url: str) -> dict[str, Any]:
    engine = db_engine.create(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            counts = dict(
                (await conn.execute(sa.text("SELECT status, count(*) FROM jobs GROUP BY 1"))).all()
            )
            usage = await run_slots.usage(conn)
            rows = await conn.scalar(sa.text("SELECT count(*) FROM run_slots"))
            attempts = await conn.scalar(sa.text("SELECT max(attempts) FROM jobs"))
    finally:
        await engine.dispose()
    return {"jobs": counts, "usage": usage, "rows": int(rows or 0), "max_attempts": attempts}


async def _slot_writes(url: str) -> dict[str, int]:
    """Rows of ``run_slots`` written in this database: its statistics, read once the
    workers are gone (a backend flushes them as it exits; a worker killed with -9 does
    not, so its writes are missing)."""
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        row = await conn.fetchrow(
            "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'run_slots'"
        )
    finally:
        await conn.close()
    return {"inserted": int(row["n_tup_ins"]), "updated": int(row["n_tup_upd"])}


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()


def worker_settings(args: argparse.Namespace) -> dict[str, str]:
    """The settings each worker runs with that may differ from the service's defaults: by
    default a short lease and reap interval, so that a killed worker's jobs come back
    within the run, and a short snooze (``--lease-seconds 60 --reap-seconds 10
    --snooze-seconds 60`` are the service's)."""
    return {
        "KAIRO_APIFY_ACCOUNT_MAX_CONCURRENT_RUNS": str(args.limit),
        "KAIRO_CONCURRENCY": str(args.concurrency),
        "KAIRO_LEASE_SECONDS": f"{args.lease_seconds:g}",
        "KAIRO_REAP_INTERVAL_SECONDS": f"{args.reap_seconds:g}",
        "KAIRO_SNOOZE_SECONDS": f"{args.snooze_seconds:g}",
        "KAIRO_CAP_INSTAGRAM_POSTS": "5",
    }


def timings_line(args: argparse.Namespace) -> str:
    """Lease, reap interval and snooze against the service's defaults."""
    s = config.Settings()
    pairs = (
        ("lease", args.lease_seconds, s.lease_seconds),
        ("reap interval", args.reap_seconds, s.reap_interval_seconds),
        ("snooze", args.snooze_seconds, s.snooze_seconds),
    )
    shown = ", ".join(
        f"{name} {mine:g} s" + ("" if mine == theirs else f" (service: {theirs:g} s)")
        for name, mine, theirs in pairs
    )
    differ = any(mine != theirs for _, mine, theirs in pairs)
    return shown + ("; not the service's defaults" if differ else "; the service's defaults")


def _worker(
    url: str, base_url: str, args: argparse.Namespace, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
    env.update(
        KAIRO_DATABASE_URL=url,
        KAIRO_APIFY_BASE_URL=base_url,
        KAIRO_APIFY_TOKEN=TOKEN,
        KAIRO_HTTP_PORT="0",
        KAIRO_LOG_FORMAT="json",
        KAIRO_LOG_LEVEL="WARNING",
        **worker_settings(args),
    )
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "kairo_ingest", "run"], env=env, stdout=out, stderr=out
    )


async def main() -> int:
    args = parse_args()
    runs = args.brands * args.sources
    ideal = runs * args.run_seconds / args.limit
    kill_after = args.kill_after if args.kill_after is not None else ideal / 3
    shown = ", ".join(f"{k}={v}" for k, v in worker_settings(args).items())
    print(f"worker settings (the rest are the service's defaults): {shown}", flush=True)
    print(f"worker timings: {timings_line(args)}", flush=True)
    print(f"machine: {machine_load.line()}", flush=True)
    name = f"kairo_bench_budget_{uuid.uuid4().hex[:8]}"
    await _admin(args.dsn, f'CREATE DATABASE "{name}"')
    url = make_url(args.dsn).set(database=name).render_as_string(hide_password=False)
    logs_dir = Path(tempfile.mkdtemp(prefix="kairo-bench-budget-"))
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await migrate.upgrade(url)
        await _seed(url, args)
        sim_config = {
            "seed": 11,
            "expected_token": TOKEN,
            "time_factor": 1.0,
            "ready_seconds": 0.0,
            "duration_min_seconds": args.run_seconds,
            "duration_max_seconds": args.run_seconds,
            "outcome_weights": {"SUCCEEDED": 1.0},
            "max_concurrent_runs": args.limit,
        }
        async with sim_server.running(sim_config) as sim:
            started = time.monotonic()
            workers = [
                _worker(url, sim.base_url, args, logs_dir / f"worker{i}.log")
                for i in range(args.workers)
            ]
            killed = False
            status: dict[str, Any] = {}
            while time.monotonic() - started < args.timeout:
                await asyncio.sleep(0.5)
                due = time.monotonic() - started >= kill_after
                if not killed and not args.no_kill and due and args.workers > 1:
                    workers[0].send_signal(signal.SIGKILL)
                    killed = True
                status = await _status(url)
                done = status["jobs"].get("succeeded", 0) + status["jobs"].get("failed", 0)
                if done == args.brands:
                    break
            wall = time.monotonic() - started
            stats = sim.stats()
            summaries = sim.state.run_summaries()
            first = min(
                (datetime.fromisoformat(r["startedAt"].replace("Z", "+00:00")) for r in summaries),
                default=None,
            )
            last = max((r["finishedAtEpoch"] or 0 for r in summaries), default=0)
        _stop(workers)  # their backends flush their table statistics as they exit
        final = await _status(url)
        writes = await _slot_writes(url)
        live = sum(u["runs"] for u in final["usage"].values())
        print(f"runs: {runs} ({args.brands} brands x {args.sources}), {args.run_seconds:g} s each")
        print(f"workers: {args.workers} x concurrency {args.concurrency}; limit {args.limit}")
        print(f"jobs: {final['jobs']}; most attempts of a job: {final['max_attempts']}")
        print(f"simulator starts: {stats['starts']}, max concurrent runs: {stats['activePeak']}")
        print(f"limit refusals: {sum(stats['rejected'].values())} {stats['rejected']}")
        print(f"worker killed with SIGKILL at {kill_after:.1f} s: {killed}")
        print(
            f"slots still counted after the end (leaked): {live}; dead rows left: {final['rows']}"
        )
        print(
            f"run_slots rows written: {writes['inserted']} inserted, {writes['updated']} "
            f"updated ({writes['updated'] / runs:.1f} per run; every pass under the "
            "account's lock refreshes its waiter's row)"
        )
        print(f"wall time: {wall:.1f} s; ideal {ideal:.1f} s; ratio {wall / ideal:.2f}")
        if first is not None and last:
            span = last - first.timestamp()
            print(
                f"first run start to last run end: {span:.1f} s; ratio {span / ideal:.2f} "
                "(without the workers' start-up)"
            )
        print(f"at the end: {machine_load.line()}")
        ok = stats["activePeak"] <= args.limit and live == 0 and status.get("jobs") is not None
        return 0 if ok else 1
    finally:
        _stop(workers)
        await _admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
