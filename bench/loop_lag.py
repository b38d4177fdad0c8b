"""Event-loop lag while 7 sources store 3,000 items each, concurrently.

Seven sources (every platform; realistic item shapes from the simulator's dataset
generator, texts padded to ``--text-chars``) each push their items through
``pipeline.store.store_page`` in pages of ``--page-size``, all at once, against real
PostgreSQL, while a ticker measures how late the loop wakes it (``asyncio.sleep`` of
``--tick-ms``; lag = wake-up time minus the asked delay). Two approaches, alternating in
the same process and database, on the same items:

* ``ours``: the pipeline as it is: each page is encoded and normalized in the
  pipeline's CPU thread (``pipeline.offload``), before the fenced transaction;
* ``inline``: the old approach: the same work run on the event loop (``offload.run``
  replaced by a direct call) and one transaction per page (``WRITE_BATCH_ITEMS`` set to
  the page size), as the pipeline did before. It keeps today's cheaper encoding (JSON
  sent as text), so the old code's lag was, if anything, higher than this.

Reported per approach: loop lag p50 / p99 / max, items/s, and the ratios inline/ours;
and, as the noise floor of the machine, the lag of the ticker alone (``idle``: no work,
as long as one approach ran).

    python bench/loop_lag.py                       # 7 x 3,000 items, 2 rounds
    python bench/loop_lag.py --items 200 --rounds 1   # smoke size

PostgreSQL at 127.0.0.1:5432 (user postgres, trust) unless ``--dsn`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url

import machine_load  # bench/ is the script's directory
from kairo_apify_sim import config as sim_config
from kairo_apify_sim import datasets
from kairo_ingest import logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate, runs, sources
from kairo_ingest.domain import registry, statuses
from kairo_ingest.pipeline import offload, store
from kairo_ingest.queue import jobs as queue_jobs

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SOURCES = [
    ("instagram", "posts", "@benchbrand"),
    ("instagram", "reels", "@benchbrand"),
    ("tiktok", "profile_videos", "@benchbrand"),
    ("youtube", "channel_videos", "https://www.youtube.com/@benchbrand"),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/benchbrand/"),
    ("linkedin", "profile_posts", "https://www.linkedin.com/in/benchbrand/"),
    ("web", "crawl_pages", "https://benchbrand.example/"),
]
TEXT_KEYS = ("caption", "text", "description", "commentary")
APPROACHES = ("ours", "inline")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--items", type=int, default=3000, help="items per source")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--text-chars", type=int, default=1500, help="pad texts to this size")
    parser.add_argument("--tick-ms", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both approaches")
    return parser.parse_args()


def make_pages(
    platform: str, capability: str, identifier: str, n: int, page_size: int, text_chars: int
) -> list[list[tuple[int, Any]]]:
    spec = registry.get_spec(platform, capability)
    run_input = spec.build_input(identifier, {}, n)
    cfg = sim_config.SimConfig(seed=7)
    rows = datasets.items_window(
        cfg, spec.actor_id, "bench-run", run_input, total=n, offset=0, limit=n
    )
    padding = " lorem ipsum #bench" * (text_chars // 19 + 1)
    out: list[tuple[int, Any]] = []
    for index, item in enumerate(rows):
        for key in TEXT_KEYS:
            if isinstance(item.get(key), str):
                item[key] = (item[key] + padding)[:text_chars]
        out.append((index, item))
    return [out[i : i + page_size] for i in range(0, len(out), page_size)]


@contextlib.asynccontextmanager
async def fresh_database(dsn: str) -> AsyncIterator[str]:
    name = f"kbench_looplag_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(db_engine.plain_dsn(dsn))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(dsn).set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def setup(engine: Any) -> tuple[queue_jobs.Lease, list[tuple[sources.Source, runs.Run]]]:
    """A brand with the 7 sources, its claimed compile job and one SUCCEEDED run per source."""
    brand = uuid.uuid4()
    added = []
    for platform, capability, identifier in SOURCES:
        source, _ = await sources.add(
            engine, brand_id=brand, platform=platform, capability=capability, identifier=identifier
        )
        added.append(source)
    await queue_jobs.enqueue(engine, kind=statuses.JobKind.COMPILE, brand_id=brand)
    (lease,) = await queue_jobs.claim(engine, owner="bench", limit=1, lease_seconds=3600)
    pairs = []
    async with engine.begin() as conn:
        for source in added:
            run = await runs.create_intent(
                conn,
                job_id=lease.job_id,
                source_id=source.id,
                brand_id=brand,
                actor_id=registry.get_spec(source.platform, source.capability).actor_id,
                run_input={},
                item_cap=10_000_000,
                attempt=1,
            )
            run = await runs.update(
                conn,
                run.id,
                apify_run_id=f"bench-{uuid.uuid4().hex[:12]}",
                dataset_id="bench",
                status=statuses.RunStatus.SUCCEEDED,
                started_at=sa.func.now(),
                finished_at=sa.func.now(),
            )
            pairs.append((source, run))
    return lease, pairs


async def _inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


async def idle(seconds: float, tick: float) -> dict[str, Any]:
    """The ticker alone: what the machine's load adds to any figure above."""
    lags: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        before = time.perf_counter()
        await asyncio.sleep(tick)
        lags.append(max(0.0, time.perf_counter() - before - tick))
    ordered = sorted(lags)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": 1000 * ordered[-1],
    }


async def measure(
    engine: Any,
    approach: str,
    pages: dict[tuple[str, str], list[list[tuple[int, Any]]]],
    tick: float,
) -> dict[str, Any]:
    lease, pairs = await setup(engine)
    original: Callable[..., Awaitable[Any]] = offload.run
    batch_items = store.WRITE_BATCH_ITEMS
    if approach == "inline":
        offload.run = _inline  # type: ignore[assignment]
        store.WRITE_BATCH_ITEMS = max(len(p) for pages_of in pages.values() for p in pages_of)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(tick)
            lags.append(max(0.0, time.perf_counter() - before - tick))

    async def one(source: sources.Source, run: runs.Run) -> int:
        stored = 0
        for page in pages[(source.platform, source.capability)]:
            counts = await store.store_page(
                engine,
                lease,
                run,
                platform=source.platform,
                capability=source.capability,
                page=page,
            )
            stored += counts.raw
        return stored

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(tick * 4)
    started = time.perf_counter()
    try:
        stored = await asyncio.gather(*(one(s, r) for s, r in pairs))
    finally:
        seconds = time.perf_counter() - started
        stop.set()
        await ticking
        offload.run = original  # type: ignore[assignment]
        store.WRITE_BATCH_ITEMS = batch_items
    expected = sum(len(p) for pages_of in pages.values() for p in pages_of)
    assert sum(stored) == expected, (sum(stored), expected)
    ordered = sorted(lags)
    return {
        "approach": approach,
        "items": expected,
        "seconds": seconds,
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": 1000 * ordered[-1],
        "ticks": len(ordered),
    }


def report(args: argparse.Namespace, results: list[dict[str, Any]], floor: dict[str, Any]) -> None:
    print(
        f"\n{len(SOURCES)} sources x {args.items} items, pages of {args.page_size}, texts "
        f"{args.text_chars} chars, tick {args.tick_ms} ms, {args.rounds} round(s)"
    )
    print(f"{'approach':<8} {'items/s':>9} {'lag p50 ms':>11} {'p99 ms':>9} {'max ms':>9}")
    summary: dict[str, dict[str, float]] = {}
    for approach in APPROACHES:
        mine = [r for r in results if r["approach"] == approach]
        row = {
            "rate": statistics.median(r["items"] / r["seconds"] for r in mine),
            "p50": statistics.median(r["p50_ms"] for r in mine),
            "p99": statistics.median(r["p99_ms"] for r in mine),
            "max": max(r["max_ms"] for r in mine),
        }
        summary[approach] = row
        print(
            f"{approach:<8} {row['rate']:>9.0f} {row['p50']:>11.1f} {row['p99']:>9.1f} "
            f"{row['max']:>9.1f}"
        )
    print(
        f"{'idle':<8} {'':>9} {floor['p50_ms']:>11.1f} {floor['p99_ms']:>9.1f} "
        f"{floor['max_ms']:>9.1f}   (ticker alone: the machine's noise floor)"
    )
    ours, inline = summary["ours"], summary["inline"]

    def ratio(key: str) -> str:
        return f"{inline[key] / ours[key]:.1f}x" if ours[key] > 0 else "n/a"

    print(
        f"inline/ours: lag p99 {ratio('p99')}, lag max {ratio('max')}; "
        f"throughput ours/inline {ours['rate'] / inline['rate']:.2f}"
    )


async def main_async(args: argparse.Namespace) -> None:
    pages = {
        (platform, capability): make_pages(
            platform, capability, identifier, args.items, args.page_size, args.text_chars
        )
        for platform, capability, identifier in SOURCES
    }
    async with fresh_database(args.dsn) as url:
        await migrate.upgrade(url)
        engine = db_engine.create(url)
        try:
            results = []
            for round_number in range(args.rounds):
                order = APPROACHES if round_number % 2 == 0 else APPROACHES[::-1]
                for approach in order:
                    result = await measure(engine, approach, pages, args.tick_ms / 1000)
                    print(
                        f"round {round_number + 1} {approach:<6} {result['seconds']:.2f}s "
                        f"lag p50 {result['p50_ms']:.1f} p99 {result['p99_ms']:.1f} "
                        f"max {result['max_ms']:.1f} ms ({result['ticks']} ticks)",
                        flush=True,
                    )
                    results.append(result)
            floor = await idle(
                statistics.median(r["seconds"] for r in results), args.tick_ms / 1000
            )
        finally:
            await engine.dispose()
    report(args, results, floor)


def main() -> None:
    args = parse_args()
    logs.configure(level="WARNING", json_format=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    print(
        f"settings: {len(SOURCES)} sources x {args.items} items, pages of {args.page_size}, "
        f"texts {args.text_chars} chars, tick {args.tick_ms} ms, {args.rounds} round(s), "
        f"engine pool 10 + 10; {machine_load.line()}",
        flush=True,
    )
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
