"""Queue benchmark, best against best: each system at its best settings, per concurrency.

For each concurrency (50, 200 and 800 by default), in one run and back to back, each in a
fresh database on the same server, N no-op jobs are drained by one worker process:

* pgqueuer at batch sizes 10, 50, 100 and 200 (those its rule ``concurrency >= 2 x batch``
  allows); its best is kept;
* procrastinate at its best settings: the given concurrency and a pool of
  ``min(concurrency, 50)`` connections (its worker fetches one job per query in a single
  fetch loop, so neither more connections nor LISTEN/NOTIFY, which only wakes an idle
  worker, change a drain; its ``fetch_job_polling_interval`` only matters when idle);
* ours with the service's engine shape (see :func:`ours_tuned`); ours' best is the better
  of this and the old defaults below;
* ours with the old default settings (``db.engine.create`` defaults: pool 10 + 10),
  labelled as such, next to pgqueuer at its default batch size (10): the old comparison.

Prints one table with ours (tuned) / best peer per concurrency, and the defaults table.
Usage::

    python bench/queue_sweep.py --jobs 20000 --concurrency 50,200,800
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
import queue_throughput as qt
from kairo_ingest import logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate
from kairo_ingest.queue import sql
from kairo_ingest.worker import builtin

BATCH_SIZES = (10, 50, 100, 200)
OURS = "ours, best"
STATEMENTS_ALONE = "our statements alone (no per-job Python)"


def ours_tuned(concurrency: int) -> dict[str, int]:
    """Our settings per concurrency: the service's own engine shape (the connection budget's
    pool of 12, no overflow). Nothing else needs tuning: the claim takes every free slot in
    one statement, so its batch follows the concurrency."""
    return {"pool_size": 12, "max_overflow": 0}


Setting = tuple[str, str, Callable[..., Awaitable[float]], dict[str, int]]


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
        "kinds": [builtin.NOOP_KIND],
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


async def sweep(dsn: str, n: int, concurrencies: list[int], rounds: int) -> None:
    print(
        f"queue sweep: {n} no-op jobs per drain, PostgreSQL {await qt.server_version(dsn)} at "
        f"{make_url(dsn).host}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"best of {rounds} interleaved round(s) per setting (procrastinate: one)",
        flush=True,
    )
    rows: list[tuple[int, dict[str, Best], str, int, str]] = []
    for c in concurrencies:
        tuned = ours_tuned(c)
        label = ", ".join(f"{k} {v}" for k, v in tuned.items())
        ours_tuned_label = f"ours, service pool ({label})"
        settings: list[Setting] = [
            (ours_tuned_label, "ours", qt.ours_throughput, tuned),
            ("ours, old defaults", "ours", qt.ours_throughput, {}),
            (STATEMENTS_ALONE, "ours", statements_alone, {}),
        ]
        # pgqueuer refuses concurrency < 2 x batch.
        batches = [b for b in BATCH_SIZES if c >= 2 * b]
        settings += [
            (f"pgqueuer batch {b}", "pgqueuer", qt.pgqueuer_throughput, {"batch_size": b})
            for b in batches
        ]
        pool = min(c, 50)
        proc_label = f"procrastinate (pool {pool})"
        proc_setting: Setting = (
            proc_label,
            "procrastinate",
            qt.procrastinate_throughput,
            {"max_size": pool},
        )
        best: dict[str, Best] = {}
        for round_no in range(rounds):
            # Interleaved, so that a burst of load elsewhere on the machine hits every setting.
            for setting in settings + ([proc_setting] if round_no == 0 else []):
                rate, split = await _measure(dsn, n, c, setting)
                kept = best.setdefault(setting[0], Best())
                if rate > kept.rate:
                    kept.rate, kept.split = rate, split
                print(
                    f"  c={c:<4} {setting[0]:<44} {rate:>9,.0f} jobs/s  "
                    f"CPU us/job (this process + server): {_cpu(Best(rate, split), n)}",
                    flush=True,
                )
        # Ours at its best: the better of its two engine shapes.
        best[OURS] = max(best[ours_tuned_label], best["ours, old defaults"], key=lambda b: b.rate)
        pgq_batch = max(batches, key=lambda b: best[f"pgqueuer batch {b}"].rate)
        rows.append((c, best, f"pgqueuer batch {pgq_batch}", pgq_batch, proc_label))
    print()
    print("best against best (one worker process each):\n")
    print("| concurrency | ours, best | best pgqueuer | procrastinate | ours / best peer |")
    print("|---|---|---|---|---|")
    for c, best, pgq, batch, proc in rows:
        peer = max(best[pgq].rate, best[proc].rate)
        print(
            f"| {c} | {best[OURS].rate:,.0f} | {best[pgq].rate:,.0f} (batch {batch}) "
            f"| {best[proc].rate:,.0f} | **{best[OURS].rate / peer:.2f}** |"
        )
    print(
        "\nwhere the CPU goes, microseconds per job (this process + the PostgreSQL server),"
        "\nand the ceiling of our SQL: our claim and complete statements with no per-job"
        "\nPython at all (two asyncpg connections, batches of the concurrency):\n"
    )
    print(
        "| concurrency | ours, CPU | ours, waiting on claims | best pgqueuer, CPU "
        "| statements alone | CPU | statements alone / best peer |"
    )
    print("|---|---|---|---|---|---|---|")
    for c, best, pgq, _, proc in rows:
        peer = max(best[pgq].rate, best[proc].rate)
        alone = best[STATEMENTS_ALONE]
        print(
            f"| {c} | {_cpu(best[OURS], n)} | {_claim_wait(best[OURS])} | {_cpu(best[pgq], n)} "
            f"| {alone.rate:,.0f} jobs/s | {_cpu(alone, n)} | {alone.rate / peer:.2f} |"
        )
    print("\ndefault settings (the old comparison): ours with db.engine.create's defaults")
    print("(pool 10 + 10), pgqueuer at its default batch size of 10:\n")
    print("| concurrency | ours, defaults | pgqueuer, batch 10 | ratio |")
    print("|---|---|---|---|")
    for c, best, *_ in rows:
        default = best["ours, old defaults"].rate
        pgq_default = best[f"pgqueuer batch {BATCH_SIZES[0]}"].rate
        ratio = f"{default / pgq_default:.2f}" if pgq_default else "n/a"
        print(f"| {c} | {default:,.0f} | {pgq_default:,.0f} | {ratio} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", qt.DEFAULT_DSN))
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", default="50,200,800", help="comma list")
    parser.add_argument("--rounds", type=int, default=1, help="runs per setting; best kept")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    logs.configure(level="WARNING", json_format=False)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    asyncio.run(sweep(args.dsn, args.jobs, levels, args.rounds))


if __name__ == "__main__":
    main()
