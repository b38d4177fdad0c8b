"""Queue benchmark, best against best: each system at its best settings, per concurrency.

For each concurrency (50, 200 and 800 by default), in one run and back to back, each in a
fresh database on the same server, N no-op jobs are drained by one worker process, and
every setting below is measured the same number of times (``--rounds``, interleaved, so a
burst of load elsewhere hits every setting); each setting keeps its best:

* ours with the service's settings and engine shape, paying the prune (the drain's time
  includes deleting every finished job): see ``queue_throughput.ours_throughput``;
* pgqueuer with both of its drivers (one connection; a pool), every batch size its rule
  ``concurrency >= 2 x batch`` allows from 10 up to ``concurrency / 2``, and its
  recommended autovacuum settings (``queue_throughput.pgqueuer_settings``); its best is
  kept;
* procrastinate at its best settings: the given concurrency and a pool of
  ``min(concurrency, 50)`` connections (its worker fetches one job per query in a single
  fetch loop, so neither more connections nor LISTEN/NOTIFY, which only wakes an idle
  worker, change a drain).

It also measures a **ceiling**, not a comparison: our claim and complete statements
alone, with no per-job Python, on two asyncpg connections. It says how fast our SQL could
go; it is not set against the peers, which run their whole stack.

Prints every setting first, then each drain, then the tables. Usage::

    python bench/queue_sweep.py --jobs 20000 --concurrency 50,200,800 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.engine import make_url

import cpu_split  # bench/ is the script's directory
import machine_load
import queue_throughput as qt
import support_path  # noqa: F401 - tests/ on sys.path, for support
from kairo_ingest import logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate
from kairo_ingest.queue import sql
from support import noop

OURS = qt.OURS_LABEL
STATEMENTS_ALONE = "ceiling: our statements alone (no per-job Python)"


Setting = tuple[str, str, Callable[..., Awaitable[float]], dict[str, Any]]


def _positional(statement: Any) -> tuple[str, list[str]]:
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())
    return str(compiled), list(compiled.positiontup or [])


async def statements_alone(url: str, n: int, concurrency: int) -> float:
    """Our claim and complete statements with no per-job Python: the ceiling of our SQL.

    One asyncpg connection claims batches of ``concurrency`` jobs while a second completes
    the batch before, as the worker's claim loop and finisher do, but nothing runs per
    job: no task, handler, log context, metric or row object. What is left is what
    PostgreSQL spends on the two row updates (and their index entries) plus the driver.
    """
    await migrate.upgrade(url)
    engine = db_engine.create(url)
    try:
        await qt.load_noops(engine, url, n)
    finally:
        await engine.dispose()
    claim, claim_names = _positional(sql.CLAIM)
    complete, complete_names = _positional(sql.END)
    claim_values: dict[str, Any] = {
        "kinds": [noop.NOOP_KIND],
        "limit": concurrency,
        "owner": "ceiling",
        "lease_seconds": 60.0,
    }
    claim_args = [claim_values[name] for name in claim_names]
    batches: asyncio.Queue[list[Any] | None] = asyncio.Queue(maxsize=2)
    claimer = await asyncpg.connect(url)
    completer = await asyncpg.connect(url)
    await claimer.execute(str(sql.CLAIM_PLANNER_SESSION))

    async def claim_all() -> None:
        while rows := await claimer.fetch(claim, *claim_args):
            await batches.put(rows)
        await batches.put(None)

    async def complete_all() -> None:
        while (rows := await batches.get()) is not None:
            n = len(rows)
            values: dict[str, Any] = {
                "ids": [r["id"] for r in rows],
                "tokens": [r["lease_token"] for r in rows],
                "outcomes": ["succeeded"] * n,
                "errors": [None] * n,
                "error_kinds": [None] * n,
                "delays": [0.0] * n,
                "terminal": [False] * n,
                "evidence": [None] * n,
                "max_interruptions": 10,
                "max_snoozes": 100,
            }
            await completer.fetch(complete, *(values[name] for name in complete_names))

    try:
        with cpu_split.Drain() as drain:
            await asyncio.gather(claim_all(), complete_all())
    finally:
        await claimer.close()
        await completer.close()
    await qt.require_succeeded(url, n, "statements alone")
    return drain.seconds


@dataclasses.dataclass
class Best:
    """A setting's best drain: its rate and where that drain's CPU went."""

    rate: float = 0.0
    split: cpu_split.Split | None = None


async def _measure(dsn: str, n: int, c: int, setting: Setting) -> tuple[float, cpu_split.Split]:
    _, system, run, settings = setting
    async with qt.fresh_database(dsn, system) as url:
        elapsed = await run(url, n, c, **settings)
    return n / elapsed, cpu_split.RECORDED[-1]


def _cpu(best: Best, n: int) -> str:
    if best.split is None:
        return "n/a"
    process, server = best.split.per_job_us(n)
    server_text = "n/a" if server is None else f"{server:.0f}"
    return f"{process:.0f} + {server_text}"


def _claim_wait(best: Best) -> str:
    """The share of ours' drain its claim loop spent waiting on claim statements."""
    split = best.split
    if split is None or split.claim_wait_seconds is None:
        return "n/a"
    return f"{split.claim_wait_seconds / split.seconds:.0%}"


async def sweep(
    dsn: str, n: int, concurrencies: list[int], rounds: int, pgqueuer_pool_max: int | None
) -> None:
    print(
        f"queue sweep: {n} no-op jobs per drain, PostgreSQL {await qt.server_version(dsn)} at "
        f"{make_url(dsn).host}, {machine_load.line()}, Python {sys.version.split()[0]}, "
        f"best of {rounds} interleaved round(s) for every setting",
        flush=True,
    )
    print(f"  {qt.settings_line()}")
    plan: dict[int, list[Setting]] = {}
    for c in concurrencies:
        settings: list[Setting] = [
            *qt.settings_for(("ours",), c, pgqueuer_pool_max),
            (STATEMENTS_ALONE, "ours", statements_alone, {}),
            *qt.settings_for(("pgqueuer", "procrastinate"), c, pgqueuer_pool_max),
        ]
        plan[c] = settings
        print(f"  c={c}: {'; '.join(label for label, *_ in settings)}", flush=True)
    rows: list[tuple[int, dict[str, Best], str, str]] = []
    for c, settings in plan.items():
        best: dict[str, Best] = {}
        for _ in range(rounds):
            for setting in settings:
                rate, split = await _measure(dsn, n, c, setting)
                kept = best.setdefault(setting[0], Best())
                if rate > kept.rate:
                    kept.rate, kept.split = rate, split
                print(
                    f"  c={c:<4} {setting[0]:<52} {rate:>9,.0f} jobs/s  "
                    f"CPU us/job (this process + server): {_cpu(Best(rate, split), n)}",
                    flush=True,
                )
        pgq = max((s[0] for s in settings if s[1] == "pgqueuer"), key=lambda k: best[k].rate)
        proc = next(s[0] for s in settings if s[1] == "procrastinate")
        rows.append((c, best, pgq, proc))
    print()
    print("best against best (one worker process each):\n")
    print("| concurrency | ours | best pgqueuer | procrastinate | ours / best peer |")
    print("|---|---|---|---|---|")
    for c, best, pgq, proc in rows:
        peer = max(best[pgq].rate, best[proc].rate)
        which = pgq.removeprefix("pgqueuer ")
        print(
            f"| {c} | {best[OURS].rate:,.0f} | {best[pgq].rate:,.0f} ({which}) "
            f"| {best[proc].rate:,.0f} | **{best[OURS].rate / peer:.2f}** |"
        )
    print("\nwhere the CPU goes, microseconds per job (this process + the PostgreSQL server):\n")
    print("| concurrency | ours | ours, waiting on claims | best pgqueuer |")
    print("|---|---|---|---|")
    for c, best, pgq, _ in rows:
        print(f"| {c} | {_cpu(best[OURS], n)} | {_claim_wait(best[OURS])} | {_cpu(best[pgq], n)} |")
    print(
        "\na ceiling, not a comparison: our claim and complete statements with no per-job"
        "\nPython at all (two asyncpg connections, batches of the concurrency, no prune):\n"
    )
    print("| concurrency | statements alone | CPU |")
    print("|---|---|---|")
    for c, best, *_ in rows:
        alone = best[STATEMENTS_ALONE]
        print(f"| {c} | {alone.rate:,.0f} jobs/s | {_cpu(alone, n)} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", qt.DEFAULT_DSN))
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", default="50,200,800", help="comma list")
    parser.add_argument("--rounds", type=int, default=1, help="runs per setting; best kept")
    parser.add_argument(
        "--pgqueuer-pool-max",
        type=int,
        default=None,
        help="pgqueuer's pool driver size (default: min(2 x concurrency, 40))",
    )
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    logs.configure(level="WARNING", json_format=False)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    asyncio.run(sweep(args.dsn, args.jobs, levels, args.rounds, args.pgqueuer_pool_max))


if __name__ == "__main__":
    main()
