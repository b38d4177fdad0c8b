"""Migration 0008 on a big table: how long it takes, and how long anything waits on it.

A fresh database is migrated to 0004 and loaded with N raw items (default 10,000,000,
8 per run, each ~700 bytes of JSON, as an actor's dataset item), vacuumed and analyzed.
Then ``kairo-ingest migrate`` (to head, in its own process) runs while two probes, each on
its own connection, keep working against the table every 20 ms:

* a reader: the raw items of one run (``SELECT ... WHERE apify_run_id = ...``);
* a writer: one new raw item, written as a release before 0008 does (without
  ``raw_partition_at``; such a row lands in the legacy partition once it exists).

It reports the migration's wall time, its phases (seen in ``pg_stat_activity``, sampled
every 50 ms), the longest time a probe statement took (what a reader or writer waited on
a lock) and the longest stretch in which the migration was seen holding an ACCESS
EXCLUSIVE lock on a raw-item table (sampled every 50 ms, so stretches under 50 ms may
not be seen at all).

    python bench/raw_partition_migration.py                 # 10,000,000 items
    python bench/raw_partition_migration.py --items 200000  # a quick look

PostgreSQL at 127.0.0.1:5432 (user postgres, trust) unless ``--dsn`` says otherwise.
The database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from typing import Any

import asyncpg
from alembic import command
from sqlalchemy.engine import make_url

import machine_load  # bench/ is the script's directory
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ITEMS_PER_RUN = 8
PROBE_EVERY_SECONDS = 0.02
SAMPLE_EVERY_SECONDS = 0.05


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    return parser.parse_args()


def _url(dsn: str, name: str) -> str:
    return make_url(dsn).set(database=name).render_as_string(hide_password=False)


async def load(url: str, n_items: int) -> dict[str, Any]:
    runs = max(1, n_items // ITEMS_PER_RUN)
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        started = time.monotonic()
        source = await conn.fetchval(
            "INSERT INTO source_connections (brand_id, platform, capability, identifier)"
            " VALUES (gen_random_uuid(), 'tiktok', 'profile_videos', 'bench') RETURNING id"
        )
        await conn.execute(
            "INSERT INTO apify_runs (source_connection_id, brand_id, actor_id, input, status,"
            " raw_item_count)"
            " SELECT $1, gen_random_uuid(), 'clockworks~tiktok-scraper', '{}'::jsonb,"
            " 'SUCCEEDED', $2 FROM generate_series(1, $3)",
            source,
            ITEMS_PER_RUN,
            runs,
        )
        # ~700 bytes of JSON per item, below the TOAST threshold, as a dataset item is.
        await conn.execute(
            f"""
            INSERT INTO raw_apify_items (apify_run_id, item_index, raw_json)
            SELECT r.id, i, jsonb_build_object(
                'id', md5(r.id::text || i),
                'text', repeat(md5(i::text), 12),
                'webVideoUrl', 'https://www.tiktok.com/@bench/video/' || i,
                'createTimeISO', '2026-11-01T00:00:00.000Z',
                'playCount', i * 7, 'diggCount', i, 'shareCount', i % 13,
                'hashtags', jsonb_build_array('a', 'b', 'c'),
                'authorMeta', jsonb_build_object('name', 'bench', 'fans', 1000))
            FROM apify_runs AS r CROSS JOIN generate_series(0, {ITEMS_PER_RUN - 1}) AS i
            """
        )
        loaded = time.monotonic() - started
        await conn.execute("VACUUM (ANALYZE) raw_apify_items")
        size = await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('raw_apify_items'))"
        )
        count = await conn.fetchval("SELECT count(*) FROM raw_apify_items")
        probe_run = await conn.fetchval("SELECT id FROM apify_runs LIMIT 1 OFFSET $1", runs // 2)
    finally:
        await conn.close()
    return {
        "items": count,
        "runs": runs,
        "size": size,
        "load_seconds": round(loaded, 1),
        "probe_run": probe_run,
    }


class Probe:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def report(self) -> str:
        if not self.latencies:
            return f"{self.name}: no statements"
        ordered = sorted(self.latencies)
        p99 = ordered[int(0.99 * (len(ordered) - 1))]
        errors = f", errors {self.errors}" if self.errors else ""
        return (
            f"{self.name}: {len(ordered)} statements, p99 {p99 * 1000:.1f} ms,"
            f" max {ordered[-1] * 1000:.1f} ms{errors}"
        )


async def probe(
    url: str, probe_: Probe, statement: str, args: list[Any], stop: asyncio.Event
) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await conn.execute(statement, *args)
            except asyncpg.PostgresError as exc:
                probe_.errors[type(exc).__name__] = probe_.errors.get(type(exc).__name__, 0) + 1
            probe_.latencies.append(time.monotonic() - started)
            await asyncio.sleep(PROBE_EVERY_SECONDS)
    finally:
        await conn.close()


async def watch(url: str, migrating_app: str, stop: asyncio.Event) -> dict[str, Any]:
    """Sample the migration's statements and its ACCESS EXCLUSIVE locks on raw-item tables."""
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    phases: dict[str, list[float]] = {}
    exclusive: list[tuple[float, float]] = []  # stretches seen holding it
    held_since: float | None = None
    last_seen = 0.0
    try:
        while not stop.is_set():
            now = time.monotonic()
            rows = await conn.fetch(
                "SELECT a.query, a.state,"
                " EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                "   WHERE l.pid = a.pid AND l.granted AND l.mode = 'AccessExclusiveLock'"
                "   AND c.relname LIKE 'raw_apify_items%') AS exclusive"
                " FROM pg_stat_activity a WHERE a.application_name = $1",
                migrating_app,
            )
            holding = any(r["exclusive"] for r in rows)
            for r in rows:
                if r["state"] == "active":
                    key = " ".join(r["query"].split())[:70]
                    seen = phases.setdefault(key, [now, now])
                    seen[1] = now
            if holding and held_since is None:
                held_since = now
            if not holding and held_since is not None:
                exclusive.append((held_since, last_seen))
                held_since = None
            last_seen = now
            await asyncio.sleep(SAMPLE_EVERY_SECONDS)
    finally:
        if held_since is not None:
            exclusive.append((held_since, last_seen))
        await conn.close()
    return {"phases": phases, "exclusive": exclusive}


async def main() -> None:
    args = parse_args()
    name = f"kairo_bench_partition_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(db_engine.plain_dsn(args.dsn))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _url(args.dsn, name)
    try:
        await asyncio.to_thread(command.upgrade, migrate.alembic_config(url), "0004")
        print(
            f"settings: {args.items:,} raw items, probes every "
            f"{PROBE_EVERY_SECONDS * 1000:.0f} ms, locks sampled every "
            f"{SAMPLE_EVERY_SECONDS * 1000:.0f} ms; {machine_load.line()}",
            flush=True,
        )
        print(f"loading {args.items:,} raw items ...", flush=True)
        loaded = await load(url, args.items)
        print(
            f"loaded {loaded['items']:,} items of {loaded['runs']:,} runs"
            f" ({loaded['size']}) in {loaded['load_seconds']}s",
            flush=True,
        )
        app = f"kairo-migrate-{uuid.uuid4().hex[:6]}"
        migrating_url = (
            _url(args.dsn, name) + ("&" if "?" in url else "?") + f"application_name={app}"
        )
        stop = asyncio.Event()
        reader, writer = Probe("reader (one run's items)"), Probe("writer (one item, old style)")
        tasks = [
            asyncio.create_task(
                probe(
                    url,
                    reader,
                    "SELECT count(*) FROM raw_apify_items WHERE apify_run_id = $1",
                    [loaded["probe_run"]],
                    stop,
                )
            ),
            asyncio.create_task(
                probe(
                    url,
                    writer,
                    "INSERT INTO raw_apify_items (apify_run_id, item_index, raw_json)"
                    " VALUES ($1, 1000000 + (random() * 1e9)::int, '{}'::jsonb)",
                    [loaded["probe_run"]],
                    stop,
                )
            ),
        ]
        watcher = asyncio.create_task(watch(url, app, stop))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        code = (
            "import asyncio, sys; from kairo_ingest.db import migrate; "
            "asyncio.run(migrate.upgrade(sys.argv[1]))"
        )
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, migrating_url)
        rc = await proc.wait()
        took = time.monotonic() - started
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        seen = await watcher
        if rc != 0:
            raise SystemExit(f"migrate exited {rc}")

        print(f"\nmigration 0004 -> head on {loaded['items']:,} items: {took:.1f}s wall")
        print("phases seen (statement, seconds active as sampled):")
        for query, (first, last) in seen["phases"].items():
            print(f"  {last - first:7.2f}s  {query}")
        stretches = [b - a for a, b in seen["exclusive"]]
        print(
            f"ACCESS EXCLUSIVE on a raw-item table, seen held: {len(stretches)} stretch(es),"
            f" longest {max(stretches, default=0.0) * 1000:.0f} ms (sampled every"
            f" {SAMPLE_EVERY_SECONDS * 1000:.0f} ms)"
        )
        print(reader.report())
        print(writer.report())
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    print("command: python " + " ".join([sys.argv[0], *sys.argv[1:]]), flush=True)
    asyncio.run(main())
