"""Ingestion benchmark: our streamed, batched storage against the old approach and COPY.

A TikTok dataset of N items (default 200,000; 2% error items, 2% without an id, 5%
duplicates) is served by the Apify simulator, in its own process. Each approach runs in
its own child process (so its peak RSS is its own) against its own fresh database
(created, migrated and dropped around it), fetching the same dataset page by page:

* ``copy``: PostgreSQL's own COPY of the same raw rows (``copy_records_to_table``, one
  COPY per page) into a scratch table shaped like ``raw_apify_items`` (same columns,
  identity, unique index and foreign key): the physical limit for raw storage.
* ``ours``: the pipeline's ``pipeline.store.store_page`` per page, as ``kairo-ingest run``
  does it: one fenced transaction storing the raw items and upserting their evidence.
  Raw and normalization share a transaction, so this is a combined figure.
* ``split``: the same code paths, timed apart on the same pages: raw storage
  (``items.dumps`` + ``db.items.insert_raw`` in a fenced transaction), then normalization
  (normalizers + ``db.items.set_skip_reasons`` + ``db.items.upsert_evidence`` in another).
* ``old``: the old code's approach, on SQLAlchemy: the whole dataset fetched into
  a list, raw items replaced by DELETE + one bulk INSERT in one transaction, then one
  select-then-insert-or-update transaction per item for the evidence. The per-item path
  is slow, so it runs on the first ``--old-normalize-items`` items (default 5,000) and
  its items/s is reported from that subset.

Every approach uses the same normalizers; fetching is timed apart and left out of the
storage figures (it is the same for all). Peak RSS is the child's ``ru_maxrss``; "base"
is its RSS just before ingesting (imports, engine, schema).

    python bench/ingest_throughput.py                      # 10,000 and 200,000 items
    python bench/ingest_throughput.py --items 50000 --small 0 --only ours split
    python bench/ingest_throughput.py --profile split      # cProfile one approach

PostgreSQL at 127.0.0.1:5432 (user postgres, trust) unless ``--dsn`` says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import make_url

import machine_load  # bench/ is the script's directory
from kairo_ingest import logs
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import items, migrate, runs, sources, tables
from kairo_ingest.domain import normalize, statuses
from kairo_ingest.pipeline import store
from kairo_ingest.queue import jobs as queue_jobs

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TOKEN = "bench-token-0123456789"
ACTOR = "clockworks~tiktok-scraper"
PLATFORM, CAPABILITY = "tiktok", "profile_videos"
HANDLE = "benchbrand"
APPROACHES = ("copy", "ours", "split", "old")
SCRATCH = "raw_copy_scratch"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200_000, help="dataset size")
    parser.add_argument(
        "--small", type=int, default=10_000, help="also run this size first (0: skip)"
    )
    parser.add_argument("--page-size", type=int, default=1000, help="items per page (ours: 1000)")
    parser.add_argument("--old-normalize-items", type=int, default=5000)
    parser.add_argument("--only", nargs="+", choices=APPROACHES, default=list(APPROACHES))
    parser.add_argument("--profile", choices=APPROACHES, help="cProfile this approach's child")
    parser.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--child", choices=APPROACHES, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    return parser.parse_args()


# ------------------------------------------------------------------------------ child


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


@contextlib.asynccontextmanager
async def fresh_database(dsn: str, label: str) -> AsyncIterator[str]:
    name = f"kbench_ingest_{label}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(db_engine.plain_dsn(dsn))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(dsn).set(database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def setup_run(engine: Any) -> tuple[queue_jobs.Lease, runs.Run]:
    """A source, a claimed compile job (its lease passes ``fence``) and a SUCCEEDED run."""
    brand = uuid.uuid4()
    source, _ = await sources.add(
        engine, brand_id=brand, platform=PLATFORM, capability=CAPABILITY, identifier=f"@{HANDLE}"
    )
    await queue_jobs.enqueue(engine, kind=statuses.JobKind.COMPILE, brand_id=brand)
    (lease,) = await queue_jobs.claim(engine, owner="bench", limit=1, lease_seconds=3600)
    async with engine.begin() as conn:
        run = await runs.create_intent(
            conn,
            job_id=lease.job_id,
            source_id=source.id,
            brand_id=brand,
            actor_id=ACTOR,
            run_input={"profiles": [HANDLE]},
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
    return lease, run


async def pages(
    api: apify_client.ApifyClient, dataset: str, limit: int, page_size: int
) -> AsyncIterator[list[tuple[int, Any]]]:
    page: list[tuple[int, Any]] = []
    async for index, item in api.iter_dataset_items(dataset, limit=limit, page_size=page_size):
        page.append((index, item))
        if len(page) >= page_size:
            yield page
            page = []
    if page:
        yield page


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Any:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


async def streamed(
    api: apify_client.ApifyClient, args: argparse.Namespace, timer: Timer, handle: Any
) -> int:
    """Fetch page by page (timed as ``fetch``) and hand each page to ``handle``."""
    total = 0
    iterator = pages(api, args.dataset, args.items, args.page_size).__aiter__()
    while True:
        with timer("fetch"):
            try:
                page = await iterator.__anext__()
            except StopAsyncIteration:
                break
        await handle(page)
        total += len(page)
    return total


def evidence_row(
    item: normalize.NormalizedItem, run_id: uuid.UUID, raw_id: int
) -> items.EvidenceRow:
    return items.EvidenceRow(item, [{"apify_run_id": str(run_id), "raw_item_id": raw_id}])


async def child_copy(args: argparse.Namespace, url: str, timer: Timer) -> dict[str, Any]:
    engine = db_engine.create(url, pool_size=2)
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        _, run = await setup_run(engine)
        await conn.execute(
            f"CREATE TABLE {SCRATCH} (LIKE raw_apify_items INCLUDING ALL);"
            f"ALTER TABLE {SCRATCH} ADD FOREIGN KEY (apify_run_id) REFERENCES apify_runs (id)"
            " ON DELETE CASCADE"
        )
        base = _rss_mb()
        async with apify_client.ApifyClient(args.base_url, TOKEN) as api:

            async def handle(page: list[tuple[int, Any]]) -> None:
                with timer("raw"):
                    records = [(run.id, index, items.dumps(raw), None) for index, raw in page]
                    await conn.copy_records_to_table(
                        SCRATCH,
                        records=records,
                        columns=["apify_run_id", "item_index", "raw_json", "skip_reason"],
                    )

            total = await streamed(api, args, timer, handle)
        stored = await conn.fetchval(f"SELECT count(*) FROM {SCRATCH}")
    finally:
        await conn.close()
        await engine.dispose()
    return {"items": total, "raw_items": total, "stored": stored, "base_rss_mb": base}


async def child_ours(args: argparse.Namespace, url: str, timer: Timer) -> dict[str, Any]:
    engine = db_engine.create(url)
    try:
        lease, run = await setup_run(engine)
        base = _rss_mb()
        counts = store.Counts()
        async with apify_client.ApifyClient(args.base_url, TOKEN) as api:

            async def handle(page: list[tuple[int, Any]]) -> None:
                nonlocal counts
                with timer("raw+norm"):
                    counts += await store.store_page(
                        engine, lease, run, platform=PLATFORM, capability=CAPABILITY, page=page
                    )

            total = await streamed(api, args, timer, handle)
        async with engine.connect() as conn:
            stored = await conn.scalar(
                sa.select(sa.func.count()).select_from(tables.raw_apify_items)
            )
            evidence = await conn.scalar(
                sa.select(sa.func.count()).select_from(tables.normalized_evidence_items)
            )
    finally:
        await engine.dispose()
    return {
        "items": total,
        "raw_items": total,
        "norm_items": total,
        "stored": stored,
        "evidence": evidence,
        "counts": [counts.raw, counts.created, counts.updated, counts.skipped],
        "base_rss_mb": base,
    }


async def child_split(args: argparse.Namespace, url: str, timer: Timer) -> dict[str, Any]:
    engine = db_engine.create(url)
    try:
        lease, run = await setup_run(engine)
        base = _rss_mb()
        created = updated = skipped = 0
        async with apify_client.ApifyClient(args.base_url, TOKEN) as api:

            async def handle(page: list[tuple[int, Any]]) -> None:
                nonlocal created, updated, skipped
                with timer("raw"):
                    docs = [(index, items.dumps(raw), None) for index, raw in page]
                    async with engine.begin() as conn:
                        await queue_jobs.fence(conn, lease)
                        new_ids = await items.insert_raw(conn, run.id, docs)
                with timer("norm"):
                    results = [
                        (new_ids[index], normalize.normalize(PLATFORM, CAPABILITY, raw))
                        for index, raw in page
                    ]
                    rows = [
                        evidence_row(result, run.id, raw_id)
                        for raw_id, result in results
                        if isinstance(result, normalize.NormalizedItem)
                    ]
                    reasons = [
                        (raw_id, result.reason)
                        for raw_id, result in results
                        if isinstance(result, normalize.Skip)
                    ]
                    async with engine.begin() as conn:
                        await queue_jobs.fence(conn, lease)
                        await items.set_skip_reasons(conn, run.id, reasons)
                        new, old = await items.upsert_evidence(conn, run.brand_id, rows)
                created += new
                updated += old
                skipped += len(reasons)

            total = await streamed(api, args, timer, handle)
        async with engine.connect() as conn:
            stored = await conn.scalar(
                sa.select(sa.func.count()).select_from(tables.raw_apify_items)
            )
            evidence = await conn.scalar(
                sa.select(sa.func.count()).select_from(tables.normalized_evidence_items)
            )
    finally:
        await engine.dispose()
    return {
        "items": total,
        "raw_items": total,
        "norm_items": total,
        "stored": stored,
        "evidence": evidence,
        "counts": [total, created, updated, skipped],
        "base_rss_mb": base,
    }


async def child_old(args: argparse.Namespace, url: str, timer: Timer) -> dict[str, Any]:
    """The old approach written with SQLAlchemy."""
    raw_t = tables.raw_apify_items
    ev = tables.normalized_evidence_items
    engine = db_engine.create(url)
    try:
        _, run = await setup_run(engine)
        base = _rss_mb()
        async with apify_client.ApifyClient(args.base_url, TOKEN) as api:
            with timer("fetch"):  # the whole dataset in memory
                raw_items = [
                    item
                    async for _, item in api.iter_dataset_items(
                        args.dataset, limit=args.items, page_size=args.page_size
                    )
                ]
        with timer("raw"):
            # "Clear existing items for this run (idempotent replace)", then bulk create.
            async with engine.begin() as conn:
                await conn.execute(sa.delete(raw_t).where(raw_t.c.apify_run_id == run.id))
                await conn.execute(
                    sa.insert(raw_t),
                    [
                        {"apify_run_id": run.id, "item_index": index, "raw_json": item}
                        for index, item in enumerate(raw_items)
                    ],
                )
                await conn.execute(
                    sa.update(tables.apify_runs)
                    .where(tables.apify_runs.c.id == run.id)
                    .values(raw_item_count=len(raw_items))
                )
        subset = min(args.old_normalize_items, len(raw_items))
        created = updated = skipped = 0
        with timer("norm"):
            async with engine.connect() as conn:
                stored_rows = (
                    await conn.execute(
                        sa.select(raw_t.c.id, raw_t.c.raw_json)
                        .where(raw_t.c.apify_run_id == run.id)
                        .order_by(raw_t.c.item_index)
                        .limit(subset)
                    )
                ).all()
            for raw_id, raw_json in stored_rows:
                result = normalize.normalize(PLATFORM, CAPABILITY, raw_json)
                if isinstance(result, normalize.Skip):
                    skipped += 1  # the old code raised here and lost the rest; be kind
                    continue
                record = result.as_record()
                ref = {"apify_run_id": str(run.id), "raw_item_id": raw_id}
                async with engine.begin() as conn:  # one transaction per item
                    existing = (
                        await conn.execute(
                            sa.select(ev.c.id, ev.c.raw_refs).where(
                                ev.c.brand_id == run.brand_id,
                                ev.c.platform == record["platform"],
                                ev.c.content_type == record["content_type"],
                                ev.c.external_id == record["external_id"],
                            )
                        )
                    ).first()
                    if existing is not None:
                        refs = list(existing.raw_refs)
                        if ref not in refs:
                            refs.append(ref)
                        await conn.execute(
                            sa.update(ev)
                            .where(ev.c.id == existing.id)
                            .values(**record, raw_refs=refs, updated_at=sa.func.now())
                        )
                        updated += 1
                    else:
                        await conn.execute(
                            sa.insert(ev).values(**record, brand_id=run.brand_id, raw_refs=[ref])
                        )
                        created += 1
        async with engine.connect() as conn:
            stored = await conn.scalar(sa.select(sa.func.count()).select_from(raw_t))
            evidence = await conn.scalar(sa.select(sa.func.count()).select_from(ev))
    finally:
        await engine.dispose()
    return {
        "items": len(raw_items),
        "raw_items": len(raw_items),
        "norm_items": subset,
        "stored": stored,
        "evidence": evidence,
        "counts": [len(raw_items), created, updated, skipped],
        "base_rss_mb": base,
    }


CHILDREN = {"copy": child_copy, "ours": child_ours, "split": child_split, "old": child_old}


async def run_child(args: argparse.Namespace) -> dict[str, Any]:
    timer = Timer()
    async with fresh_database(args.dsn, args.child) as url:
        await migrate.upgrade(url)
        started = time.perf_counter()
        result = await CHILDREN[args.child](args, url, timer)
        result["wall_seconds"] = time.perf_counter() - started
    result["seconds"] = timer.seconds
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def child_main(args: argparse.Namespace) -> None:
    logs.configure(level="WARNING", json_format=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if os.environ.get("KAIRO_BENCH_PROFILE"):
        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, run_child(args))
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime")
        stats.print_stats(30)
        sys.stderr.write(out.getvalue())
    else:
        result = asyncio.run(run_child(args))
    sys.stdout.write(json.dumps(result) + "\n")


# ------------------------------------------------------------------------------ parent


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kairo_apify_sim",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--seed",
            "1",
            "--time-factor",
            "0.01",
            "--duration-min",
            "1",
            "--duration-max",
            "1",
            "--ready-seconds",
            "0",
            "--succeeded",
            "1",
            "--failed",
            "0",
            "--timed-out",
            "0",
            "--error-items",
            "0.02",
            "--missing-ids",
            "0.02",
            "--duplicates",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the simulator did not start")
    return proc, json.loads(line)["base_url"]


def start_dataset(base_url: str, n: int) -> str:
    """A finished simulator run of ``n`` items; returns its dataset id."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=90) as http:
        reply = http.post(
            f"/v2/acts/{ACTOR}/runs",
            params={"maxItems": n},
            json={"profiles": [HANDLE], "resultsPerPage": n},
        )
        reply.raise_for_status()
        run = reply.json()["data"]
        while run["status"] not in ("SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"):
            reply = http.get(f"/v2/actor-runs/{run['id']}", params={"waitForFinish": 60})
            reply.raise_for_status()
            run = reply.json()["data"]
    if run["status"] != "SUCCEEDED":
        raise RuntimeError(f"the dataset run ended {run['status']}")
    return str(run["defaultDatasetId"])


def measure(args: argparse.Namespace, base_url: str, dataset: str, n: int, approach: str) -> Any:
    argv = [
        sys.executable,
        __file__,
        "--child",
        approach,
        "--base-url",
        base_url,
        "--dataset",
        dataset,
        "--items",
        str(n),
        "--page-size",
        str(args.page_size),
        "--old-normalize-items",
        str(args.old_normalize_items),
        "--dsn",
        args.dsn,
    ]
    env = dict(os.environ)
    if args.profile == approach:
        env["KAIRO_BENCH_PROFILE"] = "1"
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise RuntimeError(f"{approach} ({n} items) failed with exit code {done.returncode}")
    if args.profile == approach:
        sys.stderr.write(f"\n--- profile: {approach}, {n:,} items ---\n{done.stderr}\n")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["approach"] = approach
    result["n"] = n
    return result


def _rate(items: int, seconds: float | None) -> float | None:
    return items / seconds if seconds else None


def _fmt(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.0f}{suffix}"


LABELS = {
    "copy": "COPY (physical limit)",
    "ours": "ours: store_page",
    "split": "ours: raw | norm apart",
    "old": "old approach",
}


def rates(r: dict[str, Any]) -> dict[str, float | None]:
    s = r["seconds"]
    return {
        "raw": _rate(r["raw_items"], s.get("raw")),
        "norm": _rate(r.get("norm_items", 0), s.get("norm")),
        "both": _rate(r["items"], s.get("raw+norm")),
        "fetch": _rate(r["items"], s.get("fetch")),
    }


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print()
    print(
        f"dataset: {ACTOR}, 2% error items, 2% without id, 5% duplicates; pages of "
        f"{args.page_size:,}; fetch from the simulator (own process) timed apart"
    )
    header = (
        f"{'items':>8}  {'approach':24} {'raw it/s':>10} {'norm it/s':>10} "
        f"{'raw+norm it/s':>14} {'fetch it/s':>10} {'peak RSS':>9} {'base RSS':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        x = rates(r)
        note = ""
        if r["approach"] == "old":
            note = f"  (norm on the first {r['norm_items']:,} items)"
        print(
            f"{r['n']:>8,}  {LABELS[r['approach']]:24} {_fmt(x['raw']):>10} {_fmt(x['norm']):>10} "
            f"{_fmt(x['both']):>14} {_fmt(x['fetch']):>10} {r['peak_rss_mb']:>7.0f}MB "
            f"{r['base_rss_mb']:>7.0f}MB{note}"
        )
    print()
    for n in sorted({r["n"] for r in results}):
        by = {r["approach"]: r for r in results if r["n"] == n}
        lines = []
        if "split" in by and "old" in by:
            ours, old = rates(by["split"])["norm"], rates(by["old"])["norm"]
            if ours and old:
                lines.append(f"normalization ours/old = {ours / old:,.1f}x (goal >= 20x)")
        if "ours" in by and "old" in by:
            both = rates(by["ours"])["both"]
            old_rates = rates(by["old"])
            if both and old_rates["raw"] and old_rates["norm"]:
                old_both = 1 / (1 / old_rates["raw"] + 1 / old_rates["norm"])
                lines.append(f"raw+norm store_page/old = {both / old_both:,.1f}x")
        if "copy" in by:
            copy = rates(by["copy"])["raw"]
            if "split" in by and copy:
                raw = rates(by["split"])["raw"]
                if raw:
                    lines.append(f"raw: COPY/ours = {copy / raw:,.2f}x (goal <= 3x)")
            if "ours" in by and copy:
                both = rates(by["ours"])["both"]
                if both:
                    lines.append(f"COPY/store_page (raw+norm) = {copy / both:,.2f}x")
        if lines:
            print(f"{n:,} items: " + "; ".join(lines))
    sizes = sorted({r["n"] for r in results})
    if len(sizes) > 1:
        for approach in APPROACHES:
            peaks = {r["n"]: r for r in results if r["approach"] == approach}
            if len(peaks) == len(sizes):
                small, big = peaks[sizes[0]], peaks[sizes[-1]]
                print(
                    f"peak RSS {LABELS[approach]}: {small['peak_rss_mb']:.0f}MB at "
                    f"{sizes[0]:,} -> {big['peak_rss_mb']:.0f}MB at {sizes[-1]:,} items "
                    f"({big['peak_rss_mb'] - small['peak_rss_mb']:+.0f}MB)"
                )


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    sizes = [n for n in (args.small, args.items) if n > 0]
    print(f"command: python bench/ingest_throughput.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"settings: datasets of {', '.join(f'{n:,}' for n in sizes)} items, pages of "
        f"{args.page_size:,}, old normalization timed on {args.old_normalize_items:,} items; "
        f"{machine_load.line()}",
        flush=True,
    )
    sim, base_url = start_simulator()
    results: list[dict[str, Any]] = []
    try:
        for n in sizes:
            dataset = start_dataset(base_url, n)
            for approach in APPROACHES:
                if approach not in args.only:
                    continue
                started = time.perf_counter()
                r = measure(args, base_url, dataset, n, approach)
                print(
                    f"  {n:,} items, {approach}: {time.perf_counter() - started:.1f}s "
                    f"(stored {r['stored']:,} raw, {r.get('evidence', '-')} evidence; "
                    f"seconds {json.dumps({k: round(v, 2) for k, v in r['seconds'].items()})})",
                    flush=True,
                )
                results.append(r)
    finally:
        sim.terminate()
        sim.wait(10)
    report(args, results)


if __name__ == "__main__":
    main()
