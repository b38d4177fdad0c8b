"""``kairo-ingest demo``: the whole product on embedded defaults, with a readable summary.

An embedded PostgreSQL (unless KAIRO_DATABASE_URL is set), the built-in Apify simulator
(unless KAIRO_APIFY_TOKEN is set), three sample brands with a source on every platform,
one compile job each, a worker run to completion, then a table of each brand's evidence
status. The brands have fixed ids, so a second run shows fresh runs being reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from typing import Any

import sqlalchemy as sa

from kairo_ingest import config, logs
from kairo_ingest.console import server as console_server
from kairo_ingest.db import migrate, sources, tables
from kairo_ingest.domain import statuses
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import apify_access, handlers, operator_console, resources, runner

log = logs.get(__name__)

_NAMESPACE = uuid.UUID("6f1c9a52-3d0e-4b7a-9c55-2a8e5d1f0b11")
BRANDS = ("acme", "globex", "initech")


def _sources(handle: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        ("instagram", "posts", f"@{handle}", {}),
        ("instagram", "reels", f"https://www.instagram.com/{handle}/", {}),
        ("tiktok", "profile_videos", f"@{handle}", {}),
        ("youtube", "channel_videos", f"https://www.youtube.com/@{handle}", {}),
        ("linkedin", "company_posts", f"https://www.linkedin.com/company/{handle}/", {}),
        ("linkedin", "profile_posts", f"https://www.linkedin.com/in/{handle}-ceo/", {}),
        (
            "web",
            "crawl_pages",
            f"https://{handle}.example/",
            {"extra_start_urls": [f"https://{handle}.example/blog/"]},
        ),
    ]


def brand_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _progress(engine: Any, job_ids: list[uuid.UUID], started: float) -> None:
    t = tables.jobs
    r = tables.apify_runs
    while True:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.c.status, sa.func.count())
                    .where(t.c.id.in_(job_ids))
                    .group_by(t.c.status)
                )
            ).all()
            runs_started = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(r)
                .where(r.c.job_id.in_(job_ids), r.c.apify_run_id.is_not(None))
            )
            items = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(r.c.raw_item_count), 0)).where(
                    r.c.job_id.in_(job_ids)
                )
            )
        counts = ", ".join(f"{n} {s}" for s, n in sorted(rows))
        _say(
            f"  [{time.monotonic() - started:5.1f}s] jobs: {counts}; "
            f"Apify runs: {runs_started}; raw items: {items}"
        )
        await asyncio.sleep(1.0)


async def run(settings: config.Settings, *, console: bool = False) -> int:
    """The demo; with ``console``, then the operator console on its data until a signal."""
    started = time.monotonic()
    apify_access.require_simulator(settings, demo=True)  # before the database starts
    async with resources.database(settings, require_head=False) as db:
        if not db.embedded:
            await migrate.upgrade(db.url, migrations=settings.migrations_dir)
        _say(
            f"kairo-ingest demo: database {db.display_url}" + (" (embedded)" if db.embedded else "")
        )
        async with apify_access.client(settings, demo=True) as apify:
            _say(
                f"Apify: {apify.base_url}"
                + (
                    " (built-in simulator)"
                    if apify_access.wants_builtin(settings, demo=True)
                    else ""
                )
            )
            job_ids: list[uuid.UUID] = []
            for name in BRANDS:
                brand = brand_id(name)
                for platform, capability, identifier, extra in _sources(name):
                    await sources.add(
                        db.engine,
                        brand_id=brand,
                        platform=platform,
                        capability=capability,
                        identifier=identifier,
                        settings=extra,
                    )
                job, _ = await queue_jobs.enqueue(
                    db.engine, kind=statuses.JobKind.COMPILE, brand_id=brand, params={}
                )
                job_ids.append(job.id)
                _say(f"brand {name:8} {brand}: 7 sources, compile job {job.id}")
            worker = runner.make_worker(
                settings, db, handlers.pipeline_deps(settings, db.engine, apify), concurrency=10
            )
            progress = asyncio.create_task(_progress(db.engine, job_ids, started))
            try:
                await worker.run(drain=True)
            finally:
                progress.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await progress
            await _summary(db, job_ids, time.monotonic() - started, settings)
        if console:
            _say("")
            _say("Serving the operator console on the demo's data (Ctrl-C stops it).")
            port = settings.console_port or console_server.DEFAULT_PORT
            return await operator_console.serve(
                settings, db.engine, host=settings.console_host, port=port
            )
    return 0


async def _summary(
    db: resources.Database, job_ids: list[uuid.UUID], elapsed: float, settings: config.Settings
) -> None:
    _say("")
    _say(f"Finished in {elapsed:.1f}s.")
    header = (
        f"{'brand':8}  {'source':26}  {'outcome':9}  {'raw':>4}  {'new':>4}  {'upd':>4}  "
        f"{'skip':>4}  reason / error"
    )
    for job_id in job_ids:
        job = await queue_jobs.get(db.engine, job_id)
        if job is None:
            continue
        name = next(n for n in BRANDS if brand_id(n) == job.brand_id)
        _say("")
        _say(f"{name} - job {job.id}: {job.status} after {job.attempts} attempt(s)")
        _say(header)
        status = job.evidence_status or {}
        for bucket in ("refreshed", "reused", "skipped", "failed"):
            for e in status.get(bucket, []):
                note = e.get("error") or e.get("reason", "")
                _say(
                    f"{name:8}  {e['platform'] + '.' + e['capability']:26}  {bucket:9}  "
                    f"{e.get('raw_items', '-'):>4}  {e.get('normalized_created', '-'):>4}  "
                    f"{e.get('normalized_updated', '-'):>4}  {e.get('items_skipped', '-'):>4}  "
                    f"{note[:70]}"
                )
    async with db.engine.connect() as conn:
        raw = await conn.scalar(sa.select(sa.func.count()).select_from(tables.raw_apify_items))
        evidence = await conn.scalar(
            sa.select(sa.func.count()).select_from(tables.normalized_evidence_items)
        )
    _say("")
    _say(f"Stored: {raw} raw dataset items, {evidence} deduplicated evidence items.")
    where = (
        f"embedded PostgreSQL under {settings.data_dir.resolve() / 'pgdata'}"
        if db.embedded
        else db.display_url
    )
    _say(f"Data lives in: {where}")
    _say(
        "Look closer: kairo-ingest jobs show <job id> | kairo-ingest stats | "
        "kairo-ingest console (prints a login URL) | "
        "kairo-ingest demo (run it again: fresh runs are reused)"
    )
