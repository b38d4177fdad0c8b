"""Queue benchmark, best against best: each system at its best settings, per concurrency.

For each concurrency (50, 200 and 800 by default), in one run and back to back, each in a
fresh database on the same server, N no-op jobs are drained by one worker process:

* pgqueuer at batch sizes 10, 50, 100 and 200 (those its rule ``concurrency >= 2 x batch``
  allows); its best is kept;
* procrastinate at its best settings: the given concurrency and a pool of
  ``min(concurrency, 50)`` connections (its worker fetches one job per query in a single
  fetch loop, so neither more connections nor LISTEN/NOTIFY, which only wakes an idle
  worker, change a drain; its ``fetch_job_polling_interval`` only matters when idle);
* ours at its best settings for the concurrency (see :func:`ours_tuned`);
* ours with the old default settings (``db.engine.create`` defaults: pool 10 + 10),
  labelled as such, next to pgqueuer at its default batch size (10): the old comparison.

Prints one table with ours (tuned) / best peer per concurrency, and the defaults table.
Usage::

    python bench/queue_sweep.py --jobs 20000 --concurrency 50,200,800
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable

from sqlalchemy.engine import make_url

import queue_throughput as qt  # bench/ is the script's directory
from kairo_ingest import logs

BATCH_SIZES = (10, 50, 100, 200)


def ours_tuned(concurrency: int) -> dict[str, int]:
    """Our settings per concurrency: the service's own engine shape (the connection budget's
    pool of 12, no overflow). Nothing else needs tuning: the claim takes every free slot in
    one statement, so its batch follows the concurrency."""
    return {"pool_size": 12, "max_overflow": 0}


async def _best(
    dsn: str,
    system: str,
    n: int,
    c: int,
    rounds: int,
    label: str,
    run: Callable[..., Awaitable[float]],
    **settings: int,
) -> float:
    """The best jobs/s of ``rounds`` drains, each in a fresh database."""
    rate = 0.0
    for _ in range(rounds):
        async with qt.fresh_database(dsn, system) as url:
            elapsed = await run(url, n, c, **settings)
        rate = max(rate, n / elapsed)
    print(f"  c={c:<4} {label:<34} {rate:>9,.0f} jobs/s", flush=True)
    return rate


async def sweep(dsn: str, n: int, concurrencies: list[int], rounds: int) -> None:
    print(
        f"queue sweep: {n} no-op jobs per drain, PostgreSQL {await qt.server_version(dsn)} at "
        f"{make_url(dsn).host}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"best of {rounds} round(s) per setting",
        flush=True,
    )
    rows: list[tuple[int, float, float, int, float, float, float]] = []
    for c in concurrencies:
        tuned = ours_tuned(c)
        label = ", ".join(f"{k} {v}" for k, v in tuned.items())
        ours = await _best(
            dsn, "ours", n, c, rounds, f"ours tuned ({label})", qt.ours_throughput, **tuned
        )
        default = await _best(dsn, "ours", n, c, rounds, "ours, old defaults", qt.ours_throughput)
        pgq, pgq_batch, pgq_default = 0.0, 0, 0.0
        for batch in BATCH_SIZES:
            if c < 2 * batch:
                continue  # pgqueuer refuses concurrency < 2 x batch
            rate = await _best(
                dsn,
                "pgqueuer",
                n,
                c,
                rounds,
                f"pgqueuer batch {batch}",
                qt.pgqueuer_throughput,
                batch_size=batch,
            )
            if batch == BATCH_SIZES[0]:
                pgq_default = rate
            if rate > pgq:
                pgq, pgq_batch = rate, batch
        pool = min(c, 50)
        proc = await _best(
            dsn,
            "procrastinate",
            n,
            c,
            rounds,
            f"procrastinate (pool {pool})",
            qt.procrastinate_throughput,
            max_size=pool,
        )
        rows.append((c, ours, default, pgq_batch, pgq, proc, pgq_default))
    print()
    print("best against best (one worker process each):\n")
    print("| concurrency | ours, tuned | best pgqueuer | procrastinate | ours / best peer |")
    print("|---|---|---|---|---|")
    for c, ours, _, batch, pgq, proc, _ in rows:
        print(
            f"| {c} | {ours:,.0f} | {pgq:,.0f} (batch {batch}) | {proc:,.0f} "
            f"| **{ours / max(pgq, proc):.2f}** |"
        )
    print("\ndefault settings (the old comparison): ours with db.engine.create's defaults")
    print("(pool 10 + 10), pgqueuer at its default batch size of 10:\n")
    print("| concurrency | ours, defaults | pgqueuer, batch 10 | ratio |")
    print("|---|---|---|---|")
    for c, _, default, _, _, _, pgq_default in rows:
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
