"""Queue benchmark: kairo-ingest's queue against pgqueuer and procrastinate, side by side.

For each system, in its own fresh database on the same PostgreSQL server, in one run:

* throughput: enqueue N no-op jobs, then time one worker process (this one) draining
  them at the same concurrency; print jobs/s and the ratio ours / each peer;
* pickup latency: on an idle, listening worker, enqueue one job at a time and measure
  enqueue call start -> handler start (p50, p99), with a short random pause between
  samples so the worker is idle again each time. Each producer holds one connection.

Each system runs with its documented defaults apart from the concurrency: ours with
the service's engine settings (``db.engine.create``: pool of 10 + 10, pre-ping) and
LISTEN on; pgqueuer on one asyncpg connection (batch size 10, its default);
procrastinate on a psycopg pool of 10-20 connections with LISTEN on.

Usage (PostgreSQL at 127.0.0.1:5432, user postgres, trust)::

    python bench/queue_throughput.py --jobs 20000 --concurrency 50 --latency-samples 200

``--rounds 3`` repeats the throughput runs interleaved (ours, pgqueuer, procrastinate,
ours, ...) and reports each round and the median, which evens out a noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

import cpu_split  # bench/ is the script's directory
from kairo_ingest import config, logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import builtin, context, core
from kairo_ingest.worker import config as worker_config_module

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SYSTEMS = ("ours", "pgqueuer", "procrastinate")


@dataclasses.dataclass
class Options:
    dsn: str
    jobs: int
    concurrency: int
    latency_samples: int
    rounds: int
    systems: tuple[str, ...]
    analyze: bool


ANALYZE = True  # set from --no-analyze


# ------------------------------------------------------------------------------ databases


def _with_database(dsn: str, name: str) -> str:
    return make_url(dsn).set(database=name).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_database(dsn: str, system: str) -> Any:
    name = f"kbench_{system}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(db_engine.plain_dsn(dsn))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield db_engine.plain_dsn(_with_database(dsn, name))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def analyze(url: str, table: str) -> None:
    """Give the planner statistics for the freshly bulk-loaded table, as a table in steady
    state has them (autovacuum analyzes it); done alike for every system."""
    if not ANALYZE:
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()


async def count(url: str, query: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def load_noops(engine: Any, url: str, n: int) -> None:
    """Enqueue n of our no-op jobs and give the planner their statistics."""
    await queue_jobs.enqueue_many(engine, kind=builtin.NOOP_KIND, count=n)
    await analyze(url, "jobs")


async def require_succeeded(url: str, n: int, label: str) -> None:
    """Fail the benchmark unless every one of our n jobs succeeded."""
    done = await count(url, "SELECT count(*) FROM jobs WHERE status = 'succeeded'")
    if done != n:
        raise RuntimeError(f"{label}: {done} of {n} jobs succeeded")


# ------------------------------------------------------------------------------ ours


def our_worker(engine: Any, handlers: dict[str, Any], url: str, concurrency: int) -> core.Worker:
    # The service's defaults (60 s lease, LISTEN on), as `run` builds them.
    settings = config.Settings(listen_notify=True, finished_job_retention_days=0)
    worker_config = worker_config_module.WorkerConfig.from_settings(
        settings, owner=f"bench-{os.getpid()}", concurrency=concurrency, dsn_for_listen=url
    )
    return core.Worker(engine, handlers, worker_config)


async def ours_throughput(
    url: str, n: int, concurrency: int, *, pool_size: int = 10, max_overflow: int = 10
) -> float:
    await migrate.upgrade(url)
    engine = db_engine.create(url, pool_size=pool_size, max_overflow=max_overflow)
    try:
        await load_noops(engine, url, n)
        worker = our_worker(engine, builtin.HANDLERS, url, concurrency)
        with cpu_split.Drain() as drain:
            await worker.run(drain=True)
        elapsed = drain.seconds
        cpu_split.RECORDED[-1] = dataclasses.replace(
            drain.split, claim_wait_seconds=worker.claim_seconds
        )
    finally:
        await engine.dispose()
    await require_succeeded(url, n, "ours")
    return elapsed


async def ours_latency(url: str, samples: int, concurrency: int) -> list[float]:
    await migrate.upgrade(url)
    engine = db_engine.create(url)
    producer = db_engine.create(url, pool_size=2)
    probe = Probe()

    async def handler(ctx: context.JobContext) -> context.Outcome:
        probe.hit()
        return context.Outcome()

    worker = our_worker(engine, {"probe": handler}, url, concurrency)
    running = asyncio.create_task(worker.run())
    try:
        assert worker.listening is not None
        await asyncio.wait_for(worker.listening.wait(), 10)
        await asyncio.wait_for(worker.idle.wait(), 10)
        # The producer holds its connection, as pgqueuer's does (no pool checkout per job).
        async with producer.connect() as conn:
            held = await conn.execution_options(isolation_level="AUTOCOMMIT")

            async def enqueue() -> None:
                await queue_jobs.enqueue(held, kind="probe", brand_id=None)

            return await probe.measure(enqueue, samples)
    finally:
        worker.request_stop()
        await running
        await engine.dispose()
        await producer.dispose()


# ------------------------------------------------------------------------------ pgqueuer


async def pgqueuer_throughput(url: str, n: int, concurrency: int, *, batch_size: int = 10) -> float:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        for start in range(0, n, 5000):
            size = min(5000, n - start)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        await analyze(url, "pgqueuer")
        qm = QueueManager(queries)

        @qm.entrypoint("noop")
        async def noop(job: Any) -> None:
            return None

        with cpu_split.Drain() as drain:
            await qm.run(
                mode=QueueExecutionMode.drain,
                max_concurrent_tasks=concurrency,
                batch_size=batch_size,
            )
        elapsed = drain.seconds
    finally:
        await conn.close()
    left = await count(url, "SELECT count(*) FROM pgqueuer")
    done = await count(url, "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
    if left or done != n:
        raise RuntimeError(f"pgqueuer: {done} of {n} jobs logged successful, {left} left")
    return elapsed


async def pgqueuer_latency(url: str, samples: int, concurrency: int) -> list[float]:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(url)
    producer_conn = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        producer = Queries(AsyncpgDriver(producer_conn))
        qm = QueueManager(queries)
        probe = Probe()

        @qm.entrypoint("probe")
        async def handler(job: Any) -> None:
            probe.hit()

        running = asyncio.create_task(qm.run(max_concurrent_tasks=concurrency))
        try:
            await asyncio.sleep(0.5)  # no readiness signal to wait on: let it reach idle

            async def enqueue() -> None:
                await producer.enqueue("probe", None)

            return await probe.measure(enqueue, samples)
        finally:
            qm.shutdown.set()
            await running
    finally:
        await conn.close()
        await producer_conn.close()


# ------------------------------------------------------------------------------ procrastinate


def procrastinate_app(url: str, max_size: int = 20) -> Any:
    import procrastinate

    return procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=url, min_size=min(10, max_size), max_size=max_size
        )
    )


async def procrastinate_throughput(
    url: str, n: int, concurrency: int, *, max_size: int = 20
) -> float:
    app = procrastinate_app(url, max_size)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, n, 5000):
            await noop.batch_defer_async(*([{}] * min(5000, n - start)))
        await analyze(url, "procrastinate_jobs")
        with cpu_split.Drain() as drain:
            await app.run_worker_async(
                concurrency=concurrency, wait=False, install_signal_handlers=False
            )
        elapsed = drain.seconds
    done = await count(url, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
    if done != n:
        raise RuntimeError(f"procrastinate: {done} of {n} jobs succeeded")
    return elapsed


async def procrastinate_latency(url: str, samples: int, concurrency: int) -> list[float]:
    app = procrastinate_app(url)
    probe = Probe()

    @app.task(name="probe")
    async def handler() -> None:
        probe.hit()

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        running = asyncio.create_task(
            app.run_worker_async(concurrency=concurrency, install_signal_handlers=False)
        )
        try:
            await asyncio.sleep(0.5)  # no readiness signal to wait on: let it reach idle

            async def enqueue() -> None:
                await handler.defer_async()

            return await probe.measure(enqueue, samples)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


# ------------------------------------------------------------------------------ measuring


class Probe:
    """Enqueue one job at a time; record enqueue-start -> handler-start."""

    def __init__(self) -> None:
        self._started = asyncio.Event()
        self._at = 0.0

    def hit(self) -> None:
        self._at = time.perf_counter()
        self._started.set()

    async def measure(self, enqueue: Callable[[], Awaitable[None]], samples: int) -> list[float]:
        rng = random.Random(7)
        latencies: list[float] = []
        for _ in range(samples):
            self._started.clear()
            sent = time.perf_counter()
            await enqueue()
            await asyncio.wait_for(self._started.wait(), 30)
            latencies.append(self._at - sent)
            await asyncio.sleep(rng.uniform(0.02, 0.05))  # let the worker go idle again
        return latencies


THROUGHPUT: dict[str, Callable[[str, int, int], Awaitable[float]]] = {
    "ours": ours_throughput,
    "pgqueuer": pgqueuer_throughput,
    "procrastinate": procrastinate_throughput,
}
LATENCY: dict[str, Callable[[str, int, int], Awaitable[list[float]]]] = {
    "ours": ours_latency,
    "pgqueuer": pgqueuer_latency,
    "procrastinate": procrastinate_latency,
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def server_version(dsn: str) -> str:
    conn = await asyncpg.connect(db_engine.plain_dsn(dsn))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def main(opts: Options) -> None:
    global ANALYZE
    ANALYZE = opts.analyze
    print(
        f"queue benchmark: {opts.jobs} no-op jobs, concurrency {opts.concurrency}, "
        f"PostgreSQL {await server_version(opts.dsn)} at {make_url(opts.dsn).host}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"{'ANALYZE after load' if opts.analyze else 'no ANALYZE after load'}"
    )
    rates: dict[str, list[float]] = {s: [] for s in opts.systems}
    for round_no in range(1, opts.rounds + 1):
        for system in opts.systems:
            async with fresh_database(opts.dsn, system) as url:
                elapsed = await THROUGHPUT[system](url, opts.jobs, opts.concurrency)
            rates[system].append(opts.jobs / elapsed)
            print(
                f"  round {round_no} {system:<14} {opts.jobs / elapsed:>9,.0f} jobs/s "
                f"({elapsed:.2f} s)",
                flush=True,
            )
    print(f"throughput, median of {opts.rounds} round(s):")
    medians = {s: statistics.median(r) for s, r in rates.items()}
    for system, rate in medians.items():
        ratio = ""
        if system != "ours" and "ours" in medians:
            ratio = f"   ours/{system} = {medians['ours'] / rate:.2f}x"
        print(f"  {system:<14} {rate:>9,.0f} jobs/s{ratio}")
    if opts.latency_samples > 0:
        print(
            f"pickup latency (enqueue -> handler start on an idle worker, "
            f"{opts.latency_samples} samples):"
        )
        for system in opts.systems:
            async with fresh_database(opts.dsn, system) as url:
                values = await LATENCY[system](url, opts.latency_samples, opts.concurrency)
            print(
                f"  {system:<14} p50 {percentile(values, 0.5) * 1000:7.1f} ms   "
                f"p99 {percentile(values, 0.99) * 1000:7.1f} ms   "
                f"max {max(values) * 1000:7.1f} ms",
                flush=True,
            )


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default=",".join(SYSTEMS), help="comma list of systems")
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="skip ANALYZE after the bulk load (a cold table without planner statistics)",
    )
    args = parser.parse_args(argv)
    systems = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return Options(
        dsn=args.dsn,
        jobs=args.jobs,
        concurrency=args.concurrency,
        latency_samples=args.latency_samples,
        rounds=args.rounds,
        systems=systems,
        analyze=args.analyze,
    )


if __name__ == "__main__":
    logs.configure(level="WARNING", json_format=False)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    asyncio.run(main(parse()))
