"""End-to-end benchmark: compile jobs of 7 sources each, against the Apify simulator.

The simulator runs in this process (its own thread and event loop) with near-instant runs
(``time_factor`` 0.001: a run takes a few real milliseconds) and small datasets (5 items
per run, one page). For each worker count (1 and 2 by default), in a fresh database:
N brands with 7 enabled sources each and one ``compile`` job per brand are loaded (the
brands spread over ``--accounts`` named Apify accounts, default 2, each with the default
account's limits), then that many worker processes (``python bench/pipeline_throughput.py
--child``) drain the queue. Each worker is built as ``run`` builds it, from the default
settings: the database through ``service.resources.database`` (the connection budget's
pool of 12), the pipeline through ``service.handlers.pipeline_deps`` (the run budget and
the tenants on), the run-slot LISTEN connection, and the worker through
``service.runner.make_worker`` (concurrency 50). Every source is refreshed (a new Apify
run, one page stored and normalized). Reported: jobs/s and sources/s over the wall time
from the workers' start to the last one's end, round trips per source (counted from
SQLAlchemy's events in each worker, the worker's own claims, final writes and budget
transactions included) and each worker's peak RSS. The settings are printed first.
``--without-budget`` also drains, for each worker count, with the run budget and the
tenants off (the pipeline as it was measured before ``run`` had them), in the same run: a
ceiling, not a comparison, since nothing then holds the runs to the accounts' limits.

    python bench/pipeline_throughput.py --brands 200 --workers 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import time
from typing import Any

import sqlalchemy as sa

import machine_load  # bench/ is the script's directory
import queue_throughput as qt
import support_path  # noqa: F401 - tests/ on sys.path, for support
from kairo_apify_sim import server as sim_server
from kairo_ingest import config, logs, secretbox
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import accounts, migrate
from kairo_ingest.db import engine as db_engine
from kairo_ingest.service import handlers, resources, runner
from support import roundtrips

TOKEN = "bench-token-0123456789"
SIM: dict[str, Any] = {
    "seed": 5,
    "time_factor": 0.001,
    "ready_seconds": 0.1,
    "duration_min_seconds": 1,
    "duration_max_seconds": 3,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "default_item_count": 5,
}
SEVEN = [
    ("instagram", "posts", "@acme"),
    ("instagram", "reels", "@acme"),
    ("tiktok", "profile_videos", "@acme"),
    ("youtube", "channel_videos", "https://www.youtube.com/@acme"),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/acme/"),
    ("web", "crawl_pages", "https://acme.example/"),
    ("tiktok", "profile_videos", "@acme_shop"),
]


def settings(url: str, sim_url: str, key: str) -> config.Settings:
    """The service's default settings, on this database and the simulator."""
    return config.Settings(
        database_url=url,
        apify_token=TOKEN,
        apify_base_url=sim_url,
        secret_key=key,
        run_deadline_seconds=120.0,
    )


def settings_line(s: config.Settings, concurrency: int, accounts_: int) -> str:
    return (
        f"as `run` builds it: connection budget {s.database_pool_size} (pool 12 + 0), "
        f"concurrency {concurrency}, source concurrency {s.source_concurrency}, run budget on "
        f"(runs of {s.apify_run_memory_mbytes} MB; each account "
        f"{s.apify_account_max_concurrent_runs} runs, {s.apify_account_max_memory_mbytes} MB; "
        f"slot LISTEN on, poll {s.budget_poll_seconds:g} s), tenants on ({accounts_} named "
        f"account(s), else default), lease {s.lease_seconds:g} s"
    )


# ------------------------------------------------------------------------------ child


async def child(url: str, sim_url: str, concurrency: int, key: str, budget: bool) -> dict[str, Any]:
    s = settings(url, sim_url, key)
    async with (
        resources.database(s) as db,
        apify_client.ApifyClient(sim_url, TOKEN) as api,
    ):
        d = handlers.pipeline_deps(s, db.engine, api)
        try:
            assert d.budget is not None
            if budget:
                async with runner.slot_listener(db, d.budget):
                    worker = runner.make_worker(s, db, d, concurrency)
                    with roundtrips.counting(db.engine) as counter:
                        await worker.run(drain=True)
            else:
                bare = dataclasses.replace(d, budget=None, tenants=None)
                worker = runner.make_worker(s, db, bare, concurrency)
                with roundtrips.counting(db.engine) as counter:
                    await worker.run(drain=True)
        finally:
            if d.tenants is not None:
                await d.tenants.aclose()
    return {
        "round_trips": counter.total,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ------------------------------------------------------------------------------ parent


async def load(url: str, brands: int, named_accounts: int, key: str) -> None:
    await migrate.upgrade(url)
    engine = db_engine.create(url, pool_size=2)
    box = secretbox.SecretBox(key)
    try:
        names = [f"bench-{i}" for i in range(named_accounts)]
        for name in names:
            token = f"bench-account-token-{name}-0123456789"
            await accounts.add(
                engine,
                name=name,
                token_ciphertext=box.encrypt(token),
                fingerprint=box.fingerprint(token),
                max_concurrent_runs=None,
                max_memory_mbytes=None,
                daily_cap_usd=None,
            )
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "CREATE TEMP TABLE b AS SELECT gen_random_uuid() AS id, n "
                    "FROM generate_series(1, :n) AS n"
                ),
                {"n": brands},
            )
            # Brand n runs under account n mod (named accounts + 1): the last share is default.
            await conn.execute(
                sa.text(
                    "CREATE TEMP TABLE a AS SELECT b.id, "
                    "(CAST(:names AS text[]))[b.n % (:k + 1) + 1] AS account FROM b"
                ),
                {"names": names, "k": named_accounts},
            )
            for platform, capability, identifier in SEVEN:
                await conn.execute(
                    sa.text(
                        "INSERT INTO source_connections (brand_id, platform, capability, "
                        "identifier, account) SELECT id, :p, :c, :i, account FROM a"
                    ),
                    {"p": platform, "c": capability, "i": identifier},
                )
            await conn.execute(
                sa.text("INSERT INTO jobs (kind, brand_id) SELECT 'compile', id FROM b")
            )
    finally:
        await engine.dispose()
    await qt.analyze(url, "jobs")


async def measure(
    args: argparse.Namespace, sim_url: str, workers: int, budget: bool
) -> dict[str, Any]:
    async with qt.fresh_database(args.dsn, "pipeline") as url:
        await load(url, args.brands, args.accounts, args.key)
        started = time.perf_counter()
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--child",
                url,
                sim_url,
                str(args.concurrency),
                args.key,
                "budget" if budget else "bare",
                stdout=subprocess.PIPE,
            )
            for _ in range(workers)
        ]
        outs = [await p.communicate() for p in procs]
        elapsed = time.perf_counter() - started
        reports = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]
        done = await qt.count(url, "SELECT count(*) FROM jobs WHERE status = 'succeeded'")
        stored = await qt.count(
            url,
            "SELECT count(*) FROM apify_runs "
            "WHERE status = 'SUCCEEDED' AND raw_stored_at IS NOT NULL",
        )
    if done != args.brands or stored != args.brands * len(SEVEN):
        raise RuntimeError(f"{done} of {args.brands} jobs succeeded, {stored} sources stored")
    sources = args.brands * len(SEVEN)
    return {
        "workers": workers if budget else f"{workers}, budget and tenants off (a ceiling)",
        "jobs_s": args.brands / elapsed,
        "sources_s": sources / elapsed,
        "trips": sum(r["round_trips"] for r in reports) / sources,
        "rss": [r["peak_rss_mb"] for r in reports],
    }


async def main(args: argparse.Namespace) -> None:
    levels = [int(x) for x in args.workers.split(",")]
    print(
        f"pipeline benchmark: {args.brands} compile jobs x {len(SEVEN)} sources, simulator "
        f"in-process (time_factor {SIM['time_factor']}, {SIM['default_item_count']} items "
        f"per run), PostgreSQL {await qt.server_version(args.dsn)}, {machine_load.line()}",
        flush=True,
    )
    shown = settings(args.dsn, "http://simulator", args.key)
    print(f"  worker {settings_line(shown, args.concurrency, args.accounts)}", flush=True)
    rows = []
    with sim_server.running_in_thread(dict(SIM)) as sim:
        for workers in levels:
            for budget in (True, False) if args.without_budget else (True,):
                rows.append(await measure(args, sim.base_url, workers, budget))
                print(f"  {rows[-1]['workers']} worker(s) done", flush=True)
    print()
    print(
        "| worker processes | jobs/s | sources/s | round trips per source | peak RSS per worker |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        rss = ", ".join(f"{v:.0f} MB" for v in r["rss"])
        print(
            f"| {r['workers']} | {r['jobs_s']:,.1f} | {r['sources_s']:,.0f} | {r['trips']:.1f} "
            f"| {rss} |"
        )
    print(f"\nat the end: {machine_load.line()}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", qt.DEFAULT_DSN))
    parser.add_argument("--brands", type=int, default=200, help="compile jobs")
    parser.add_argument("--workers", default="1,2", help="comma list of worker process counts")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--accounts", type=int, default=2, help="named Apify accounts the brands spread over"
    )
    parser.add_argument(
        "--without-budget",
        action="store_true",
        help="also drain with the run budget and the tenants off, for comparison",
    )
    args = parser.parse_args()
    args.key = secretbox.generate_key()
    return args


if __name__ == "__main__":
    logs.configure(level="WARNING", json_format=False)
    logging.getLogger().setLevel(logging.WARNING)
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        url, sim_url, concurrency, key, mode = sys.argv[2:]
        report = asyncio.run(child(url, sim_url, int(concurrency), key, mode == "budget"))
        print(json.dumps(report))
    else:
        asyncio.run(main(parse()))
