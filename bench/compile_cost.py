"""What a compile job costs: round trips per job and per source, and empty compiles vs no-ops.

1. Round trips (counted from SQLAlchemy's events, :mod:`support.roundtrips`: each
   statement and each BEGIN / COMMIT / ROLLBACK the asyncpg adapter really sends) of one
   ``compile`` job, against the in-process Apify simulator: an empty compile (a brand with
   no sources), one source reused, one source refreshed with one page, and one source of a
   named Apify account refreshed. The pipeline is built as ``run`` builds it
   (``service.handlers.pipeline_deps`` from the default settings): the run budget (a slot
   taken and given back per run) and the tenants (a named account's token looked up and
   decrypted) are on. The worker's final write of the job is not included: it is batched
   with other jobs' (see the throughput part for its share per job). A last row refreshes
   one source with the budget and the tenants off, in the same run: what they cost.
2. Throughput, in the same run, in fresh databases: N no-op jobs, then N compile jobs for
   brands without sources, drained by one worker at the same concurrency, the two
   interleaved ``--rounds`` times (so that other load on the machine hits both); reports
   each one's best, and their ratio.

    python bench/compile_cost.py --jobs 5000 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
import time
import uuid
from typing import Any

import sqlalchemy as sa

import machine_load  # bench/ is the script's directory
import queue_throughput as qt
import support_path  # noqa: F401 - tests/ on sys.path, for support
from kairo_apify_sim import server as sim_server
from kairo_ingest import config, logs, secretbox
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import accounts, migrate, sources
from kairo_ingest.db import engine as db_engine
from kairo_ingest.pipeline import compile_job
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import handlers
from support import noop, roundtrips

TOKEN = "bench-token-0123456789"
QUICK: dict[str, Any] = {
    "seed": 3,
    "time_factor": 0.001,
    "ready_seconds": 0.1,
    "duration_min_seconds": 1,
    "duration_max_seconds": 2,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "default_item_count": 10,
}
POOL = 12
ONE = ("tiktok", "profile_videos", "@acme")


KEY = secretbox.generate_key()
ACCOUNT_TOKEN = "bench-account-token-0123456789"


def settings(base_url: str) -> config.Settings:
    """The service's default settings, pointed at the simulator (with a secret key, so a
    named account's token can be stored and opened)."""
    return config.Settings(
        apify_token=TOKEN, apify_base_url=base_url, secret_key=KEY, run_deadline_seconds=60.0
    )


def settings_line(s: config.Settings) -> str:
    return (
        f"pipeline as `run` builds it: run budget on (runs started with "
        f"{s.apify_run_memory_mbytes} MB; the default account's limits "
        f"{s.apify_account_max_concurrent_runs} runs, {s.apify_account_max_memory_mbytes} MB), "
        f"tenants on, source concurrency {s.source_concurrency}, engine pool {POOL} + 0"
    )


def deps(engine: Any, api: apify_client.ApifyClient) -> deps_module.Deps:
    """The compile job's dependencies exactly as the service builds them: budget and tenants."""
    return handlers.pipeline_deps(settings(api.base_url), engine, api)


async def _claim(engine: Any, brand: uuid.UUID) -> queue_jobs.Lease:
    await queue_jobs.enqueue(engine, kind="compile", brand_id=brand)
    leases = await queue_jobs.claim(
        engine, owner="bench", limit=1, lease_seconds=60, kinds=["compile"]
    )
    return leases[0]


async def _brand_of_one(engine: Any, *, account: str | None = None) -> uuid.UUID:
    """A new brand with the one source (on ``account``, else the default account)."""
    brand = uuid.uuid4()
    platform, capability, identifier = ONE
    await sources.add(
        engine,
        brand_id=brand,
        platform=platform,
        capability=capability,
        identifier=identifier,
        account=account,
    )
    return brand


async def one_job(d: deps_module.Deps, brand: uuid.UUID) -> tuple[dict[str, int], Any]:
    lease = await _claim(d.engine, brand)
    with roundtrips.counting(d.engine) as counter:
        result = await compile_job.run(d, lease)
    await endings.complete_many(d.engine, [(lease, None)])
    return counter.snapshot(), result


async def round_trips(dsn: str) -> list[tuple[str, dict[str, int]]]:
    async with qt.fresh_database(dsn, "compile") as url:
        await migrate.upgrade(url)
        engine = db_engine.create(url, pool_size=POOL, max_overflow=0)
        box = secretbox.SecretBox(KEY)
        await accounts.add(
            engine,
            name="bench-account",
            token_ciphertext=box.encrypt(ACCOUNT_TOKEN),
            fingerprint=box.fingerprint(ACCOUNT_TOKEN),
            max_concurrent_runs=None,
            max_memory_mbytes=None,
            daily_cap_usd=None,
        )
        try:
            async with (
                sim_server.running(dict(QUICK)) as sim,
                apify_client.ApifyClient(sim.base_url, TOKEN) as api,
            ):
                d = deps(engine, api)
                try:
                    await one_job(d, uuid.uuid4())  # warm the connections' statement caches
                    empty, _ = await one_job(d, uuid.uuid4())
                    brand = await _brand_of_one(engine)
                    refreshed, result = await one_job(d, brand)
                    assert len(result.evidence_status["refreshed"]) == 1, result.evidence_status
                    reused, result = await one_job(d, brand)
                    assert len(result.evidence_status["reused"]) == 1, result.evidence_status
                    other = await _brand_of_one(engine, account="bench-account")
                    named, result = await one_job(d, other)
                    assert len(result.evidence_status["refreshed"]) == 1, result.evidence_status
                    bare_brand = await _brand_of_one(engine)
                    bare = dataclasses.replace(d, budget=None, tenants=None)
                    without, result = await one_job(bare, bare_brand)
                    assert len(result.evidence_status["refreshed"]) == 1, result.evidence_status
                finally:
                    if d.tenants is not None:
                        await d.tenants.aclose()
        finally:
            await engine.dispose()
    return [
        ("empty compile (no sources)", empty),
        ("one source, reused", reused),
        ("one source, refreshed, one page", refreshed),
        ("one source of a named account, refreshed, one page", named),
        ("one source, refreshed, one page, budget and tenants off", without),
    ]


async def drain(url: str, kind: str, n: int, concurrency: int) -> tuple[float, int]:
    """Enqueue n jobs of ``kind`` (compile: one brand without sources each), drain them;
    return (jobs/s, round trips per job)."""
    await migrate.upgrade(url)
    # As the service builds it: KAIRO_DATABASE_POOL_SIZE 15 less LISTEN, probe and
    # heartbeat, no overflow (an overflow connection is opened and closed per burst).
    engine = db_engine.create(url, pool_size=POOL, max_overflow=0)
    try:
        if kind == "compile":
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "INSERT INTO jobs (kind, brand_id) SELECT 'compile', gen_random_uuid() "
                        "FROM generate_series(1, :n)"
                    ),
                    {"n": n},
                )
        else:
            await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=n)
        await qt.analyze(url, "jobs")
        async with apify_client.ApifyClient("http://127.0.0.1:9", TOKEN) as api:
            d = deps(engine, api)  # no source: neither the budget nor the tenants are asked
            handlers = {
                "compile": _compile_handler(d),
                noop.NOOP_KIND: noop.noop,
            }
            worker = qt.our_worker(engine, handlers, url, concurrency)
            with roundtrips.counting(engine) as counter:
                started = time.perf_counter()
                await worker.run(drain=True)
                elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()
    await qt.require_succeeded(url, n, kind)
    return n / elapsed, counter.total


def _compile_handler(d: deps_module.Deps) -> Any:
    from kairo_ingest.worker import context

    async def handle(ctx: context.JobContext) -> context.Outcome:
        result = await compile_job.run(d, ctx.lease)
        return context.Outcome(evidence_status=result.evidence_status, error=result.error)

    return handle


async def main(args: argparse.Namespace) -> None:
    print(
        f"compile cost: PostgreSQL {await qt.server_version(args.dsn)}, "
        f"Python {sys.version.split()[0]}, {machine_load.line()}"
    )
    print(f"  {settings_line(settings('http://simulator'))}")
    print(f"  worker: {qt.settings_line(pruned=False)}")
    print("\nround trips of one compile job (warm statement caches; final write excluded):\n")
    print("| job | BEGIN | statements | COMMIT | ROLLBACK | round trips |")
    print("|---|---|---|---|---|---|")
    for label, c in await round_trips(args.dsn):
        total = sum(c.values())
        print(
            f"| {label} | {c['begin']} | {c['statement']} | {c['commit']} | {c['rollback']} "
            f"| **{total}** |"
        )
    print(
        f"\nthroughput: {args.jobs} jobs, one worker, concurrency {args.concurrency}, "
        f"best of {args.rounds}, interleaved:\n"
    )
    results: dict[str, tuple[float, int]] = {"noop": (0.0, 0), "compile": (0.0, 0)}
    for _ in range(args.rounds):
        for kind in results:
            async with qt.fresh_database(args.dsn, kind) as url:
                got = await drain(url, kind, args.jobs, args.concurrency)
            results[kind] = max(results[kind], got)
    print("| jobs | jobs/s | round trips per job (all of the worker's) |")
    print("|---|---|---|")
    for kind, label in (("noop", "no-op"), ("compile", "empty compile")):
        rate, trips = results[kind]
        print(f"| {label} | {rate:,.0f} | {trips / args.jobs:.2f} |")
    ratio = results["compile"][0] / results["noop"][0]
    print(f"\nempty compile / no-op = **{ratio:.2f}** (target >= 0.30)")
    print(f"at the end: {machine_load.line()}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", qt.DEFAULT_DSN))
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    logs.configure(level="WARNING", json_format=False)
    logging.getLogger().setLevel(logging.WARNING)
    asyncio.run(main(parse()))
