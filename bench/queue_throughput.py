"""Queue benchmark: kairo-ingest's queue against pgqueuer and procrastinate, side by side.

For each system, in its own fresh database on the same PostgreSQL server, in one run:

* throughput: enqueue N no-op jobs, then time one worker process (this one) draining
  them at the same concurrency; every setting gets the same number of rounds, and each
  system is reported at its best setting's median;
* pickup latency: on an idle, listening worker, enqueue one job at a time and measure
  enqueue call start -> handler start (p50, p99), with a short random pause between
  samples so the worker is idle again each time. Each producer holds one connection.

The settings (all printed at start):

* ours: the service's settings as ``run`` builds them (``config.Settings`` defaults:
  60 s lease, LISTEN on, a 14-day retention) and its engine shape (the connection
  budget's pool of 12, no overflow); and it pays the prune: the drain's time includes
  deleting every finished job with the pruner's own statement, as pgqueuer deletes each
  job when it finishes (and logs it);
* pgqueuer: both of its drivers (``AsyncpgDriver`` on one connection, and
  ``AsyncpgPoolDriver`` on a pool of ``min(2 x concurrency, 40)`` connections, its
  tuning notes' "2 x expected concurrent jobs" within the server's connections), every
  batch size of :func:`pgqueuer_batches` its rule ``concurrency >= 2 x batch`` allows,
  and its recommended autovacuum settings (``Queries.optimize_autovacuum``, what
  ``pgq autovac`` applies);
* procrastinate: a psycopg pool of ``min(concurrency, 50)`` connections (its worker
  fetches one job per query, so more connections do not change a drain), LISTEN on.

Usage (PostgreSQL at 127.0.0.1:5432, user postgres, trust)::

    python bench/queue_throughput.py --jobs 20000 --concurrency 50 --latency-samples 200

``--rounds 3`` repeats the throughput runs interleaved (every setting once per round) and
reports the median of each, which evens out a noisy machine.

``--ours-pools 12+0,25+10`` also drains ours with other engine shapes (pool + overflow), in
the same rounds, and prints each against the service's: at concurrency 100, 25 + 10 is
the pool that was sized from the concurrency before the connection budget::

    python bench/queue_throughput.py --only ours --concurrency 100 --ours-pools 12+0,25+10 \
        --rounds 3 --latency-samples 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
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
import machine_load
import support_path  # noqa: F401 - tests/ on sys.path, for support
from kairo_ingest import config, logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import context, core, parameters
from support import noop

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SYSTEMS = ("ours", "pgqueuer", "procrastinate")
# The service's engine shape: KAIRO_DATABASE_POOL_SIZE (15) less LISTEN, /readyz's probe and
# the heartbeat's own connection (service.resources.ConnectionBudget), no overflow.
OURS_POOL = {"pool_size": 12, "max_overflow": 0}
OURS_LABEL = "ours (the service's settings)"
PGQUEUER_DRIVERS = ("connection", "pool")
PGQUEUER_POOL_CAP = 40  # connections: well within max_connections (100) on a shared server


def pgqueuer_batches(concurrency: int) -> list[int]:
    """The batch sizes tried: 1, 2, 2.5 and 5 times each power of ten from 10 (its
    default), and ``concurrency // 2`` itself: all of those its rule
    ``concurrency >= 2 x batch`` allows (10, 20, 25 at 50; up to 400 at 800)."""
    grid = {concurrency // 2}
    scale = 10
    while scale <= concurrency // 2:
        grid |= {scale, 2 * scale, 5 * scale // 2, 5 * scale}
        scale *= 10
    return sorted(b for b in grid if b >= 1 and 2 * b <= concurrency)


def pgqueuer_pool_max(concurrency: int) -> int:
    return min(2 * concurrency, PGQUEUER_POOL_CAP)


def settings_line(*, pruned: bool = True) -> str:
    """Ours' settings, as the benchmark prints them."""
    s = config.Settings()
    return (
        f"ours: engine pool {OURS_POOL['pool_size']} + {OURS_POOL['max_overflow']} overflow, "
        f"lease {s.lease_seconds:g} s, LISTEN {'on' if s.listen_notify else 'off'}, "
        f"poll {s.poll_interval_seconds:g} s, retention {s.finished_job_retention_days:g} days"
        + (", every finished job pruned inside the timed drain" if pruned else "")
    )


@dataclasses.dataclass
class Options:
    dsn: str
    jobs: int
    concurrency: int
    latency_samples: int
    rounds: int
    systems: tuple[str, ...]
    analyze: bool
    pgqueuer_pool_max: int | None = None
    ours_pools: tuple[tuple[int, int], ...] = ((OURS_POOL["pool_size"], OURS_POOL["max_overflow"]),)


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
    await queue_jobs.enqueue_many(engine, kind=noop.NOOP_KIND, count=n)
    await analyze(url, "jobs")


async def require_succeeded(url: str, n: int, label: str) -> None:
    """Fail the benchmark unless every one of our n jobs succeeded."""
    done = await count(url, "SELECT count(*) FROM jobs WHERE status = 'succeeded'")
    if done != n:
        raise RuntimeError(f"{label}: {done} of {n} jobs succeeded")


# ------------------------------------------------------------------------------ ours


def our_worker(engine: Any, handlers: dict[str, Any], url: str, concurrency: int) -> core.Worker:
    # The service's settings (60 s lease, LISTEN on, 14-day retention), as `run` builds them.
    settings = config.Settings()
    worker_config = parameters.WorkerConfig.from_settings(
        settings, owner=f"bench-{os.getpid()}", concurrency=concurrency, dsn_for_listen=url
    )
    return core.Worker(engine, handlers, worker_config)


def _sum(a: cpu_split.Split, b: cpu_split.Split) -> cpu_split.Split:
    server = (
        None
        if a.server_cpu_seconds is None or b.server_cpu_seconds is None
        else a.server_cpu_seconds + b.server_cpu_seconds
    )
    return cpu_split.Split(
        a.seconds + b.seconds, a.process_cpu_seconds + b.process_cpu_seconds, server
    )


async def ours_throughput(
    url: str,
    n: int,
    concurrency: int,
    *,
    pool_size: int = OURS_POOL["pool_size"],
    max_overflow: int = OURS_POOL["max_overflow"],
) -> float:
    """Drain n no-op jobs, then prune them all: the time and CPU of both are the drain's."""
    await migrate.upgrade(url)
    engine = db_engine.create(url, pool_size=pool_size, max_overflow=max_overflow)
    try:
        await load_noops(engine, url, n)
        worker = our_worker(engine, noop.HANDLERS, url, concurrency)
        with cpu_split.Drain() as drain:
            await worker.run(drain=True)
        await require_succeeded(url, n, "ours")
        with cpu_split.Drain() as prune:
            pruned = await queue_jobs.prune(engine, older_than=dt.timedelta(0))
        if pruned != n:
            raise RuntimeError(f"ours: the prune deleted {pruned} of {n} finished jobs")
        both = _sum(drain.split, prune.split)
        del cpu_split.RECORDED[-2:]
        cpu_split.RECORDED.append(
            dataclasses.replace(both, claim_wait_seconds=worker.claim_seconds)
        )
    finally:
        await engine.dispose()
    return both.seconds


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


async def pgqueuer_throughput(
    url: str,
    n: int,
    concurrency: int,
    *,
    batch_size: int = 10,
    driver: str = "connection",
    pool_max: int | None = None,
) -> float:
    """pgqueuer drains n no-op jobs: ``driver`` "connection" (``AsyncpgDriver``) or "pool"
    (``AsyncpgPoolDriver`` on ``pool_max`` connections, opened before the drain), with its
    recommended autovacuum settings applied after install."""
    from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    conn: asyncpg.Connection | None = None
    pool: asyncpg.Pool | None = None
    try:
        if driver == "pool":
            size = pool_max or pgqueuer_pool_max(concurrency)
            pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
            queries = Queries(AsyncpgPoolDriver(pool))
        else:
            conn = await asyncpg.connect(url)
            queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        await queries.optimize_autovacuum()
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
        if conn is not None:
            await conn.close()
        if pool is not None:
            await pool.close()
    left = await count(url, "SELECT count(*) FROM pgqueuer")
    done = await count(url, "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
    if left or done != n:
        raise RuntimeError(f"pgqueuer: {done} of {n} jobs logged successful, {left} left")
    return elapsed


def pgqueuer_settings(
    concurrency: int, pool_max: int | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(label, keyword arguments) of every pgqueuer setting tried at ``concurrency``."""
    size = pool_max or pgqueuer_pool_max(concurrency)
    return [
        (
            f"pgqueuer {'pool of ' + str(size) if d == 'pool' else 'one connection'}, batch {b}",
            {"batch_size": b, "driver": d, "pool_max": size},
        )
        for d in PGQUEUER_DRIVERS
        for b in pgqueuer_batches(concurrency)
    ]


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


def procrastinate_pool(concurrency: int) -> int:
    return min(concurrency, 50)


def procrastinate_app(url: str, max_size: int = 20) -> Any:
    import procrastinate

    return procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=url, min_size=min(10, max_size), max_size=max_size
        )
    )


async def procrastinate_throughput(
    url: str, n: int, concurrency: int, *, max_size: int | None = None
) -> float:
    app = procrastinate_app(url, max_size or procrastinate_pool(concurrency))

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


Throughput = Callable[..., Awaitable[float]]
Setting = tuple[str, str, Throughput, dict[str, Any]]  # label, system, run, keyword arguments


def settings_for(
    systems: tuple[str, ...],
    concurrency: int,
    pool_max: int | None,
    ours_pools: tuple[tuple[int, int], ...] = (),
) -> list[Setting]:
    """Every setting of the given systems at ``concurrency``: ours (the service's, and any
    other engine shapes of ``ours_pools``, each a system of its own), each of pgqueuer's
    (both drivers, every batch its rule allows), procrastinate at its best."""
    chosen: list[Setting] = []
    if "ours" in systems:
        chosen.append((OURS_LABEL, "ours", ours_throughput, {}))
        for size, overflow in ours_pools:
            if (size, overflow) != (OURS_POOL["pool_size"], OURS_POOL["max_overflow"]):
                shape = {"pool_size": size, "max_overflow": overflow}
                label = f"ours, pool {size} + {overflow} overflow"
                chosen.append((label, f"ours_pool{size}_{overflow}", ours_throughput, shape))
    if "pgqueuer" in systems:
        chosen += [
            (label, "pgqueuer", pgqueuer_throughput, kwargs)
            for label, kwargs in pgqueuer_settings(concurrency, pool_max)
        ]
    if "procrastinate" in systems:
        pool = procrastinate_pool(concurrency)
        chosen.append(
            (f"procrastinate (pool {pool})", "procrastinate", procrastinate_throughput, {})
        )
    return chosen


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
    settings = settings_for(opts.systems, opts.concurrency, opts.pgqueuer_pool_max, opts.ours_pools)
    print(
        f"queue benchmark: {opts.jobs} no-op jobs, concurrency {opts.concurrency}, "
        f"PostgreSQL {await server_version(opts.dsn)} at {make_url(opts.dsn).host}, "
        f"{machine_load.line()}, Python {sys.version.split()[0]}, "
        f"{'ANALYZE after load' if opts.analyze else 'no ANALYZE after load'}, "
        f"{opts.rounds} round(s) of every setting, interleaved"
    )
    print(f"  {settings_line()}")
    if "pgqueuer" in opts.systems:
        print(
            f"  pgqueuer: drivers {', '.join(PGQUEUER_DRIVERS)} (pool of "
            f"{opts.pgqueuer_pool_max or pgqueuer_pool_max(opts.concurrency)}), batches "
            f"{', '.join(map(str, pgqueuer_batches(opts.concurrency)))}, "
            "its recommended autovacuum"
        )
    print(f"  settings: {'; '.join(label for label, *_ in settings)}", flush=True)
    rates: dict[str, list[float]] = {label: [] for label, *_ in settings}
    for round_no in range(1, opts.rounds + 1):
        for label, system, run, kwargs in settings:
            async with fresh_database(opts.dsn, system) as url:
                elapsed = await run(url, opts.jobs, opts.concurrency, **kwargs)
            rates[label].append(opts.jobs / elapsed)
            print(
                f"  round {round_no} {label:<44} {opts.jobs / elapsed:>9,.0f} jobs/s "
                f"({elapsed:.2f} s)",
                flush=True,
            )
    medians = {label: statistics.median(r) for label, r in rates.items()}
    best: dict[str, tuple[str, float]] = {}
    for label, system, *_ in settings:
        if system not in best or medians[label] > best[system][1]:
            best[system] = (label, medians[label])
    print(f"throughput, each system at its best setting's median of {opts.rounds} round(s):")
    for system, (label, rate) in best.items():
        ratio = ""
        if system != "ours" and "ours" in best:
            ratio = f"   ours/{system} = {best['ours'][1] / rate:.2f}x"
        print(f"  {system:<14} {rate:>9,.0f} jobs/s  ({label}){ratio}")
    print(f"  at the end of the drains: {machine_load.line()}")
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
        "--pgqueuer-pool-max",
        type=int,
        default=None,
        help=f"pgqueuer's pool driver size (default: min(2 x concurrency, {PGQUEUER_POOL_CAP}))",
    )
    parser.add_argument(
        "--ours-pools",
        default="12+0",
        help="comma list of our engine shapes, pool+overflow (12+0: the service's)",
    )
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
    try:
        pools = tuple(
            (int(size), int(overflow))
            for size, overflow in (p.strip().split("+") for p in args.ours_pools.split(","))
        )
    except ValueError:
        parser.error(f"--ours-pools: not pool+overflow pairs: {args.ours_pools}")
    return Options(
        dsn=args.dsn,
        jobs=args.jobs,
        concurrency=args.concurrency,
        latency_samples=args.latency_samples,
        rounds=args.rounds,
        systems=systems,
        analyze=args.analyze,
        pgqueuer_pool_max=args.pgqueuer_pool_max,
        ours_pools=pools,
    )


if __name__ == "__main__":
    logs.configure(level="WARNING", json_format=False)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    asyncio.run(main(parse()))
