"""A database seeded by a real demo run, plus the rows a console test needs on top.

The demo (service/demo.py) runs for real against the test's database with the built-in
Apify simulator: three brands, seven sources each, one compile job each, a worker run to
completion. On top: a pending job (to cancel and then retry), and a brand whose source
identifier, job error, evidence error and run error are all ``<script>alert(1)</script>``.
:func:`add_workers` adds two live workers holding jobs, for the screenshots of /workers
(the demo's own worker has stopped by then).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import re
import tempfile
import uuid
from collections.abc import AsyncIterator

import httpx
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

import kairo_ingest
from kairo_ingest import config
from kairo_ingest.console import server as console_server
from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import statuses
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import demo

XSS = "<script>alert(1)</script>"
XSS_BRAND = uuid.UUID("00000000-0000-4000-8000-00000000bad1")
XSS_JOB = uuid.UUID("00000000-0000-4000-8000-00000000bad2")
XSS_SOURCE = uuid.UUID("00000000-0000-4000-8000-00000000bad3")
XSS_RUN = uuid.UUID("00000000-0000-4000-8000-00000000bad4")
CONSOLE_TOKEN = "console-token-for-tests-0123456789"
APIFY_TOKEN = "apify_api_SECRETsecretSECRET42"


@dataclasses.dataclass(frozen=True)
class Seeded:
    url: str
    pending_job: uuid.UUID
    demo_jobs: list[uuid.UUID]


def settings(url: str, **extra: object) -> config.Settings:
    values: dict[str, object] = {
        "database_url": url,
        "apify_token": None,
        "apify_base_url": config.DEFAULT_APIFY_BASE_URL,
        "data_dir": pathlib.Path(tempfile.mkdtemp(prefix="kairo-console-")),
    }
    return config.load(**(values | extra))


async def seed(url: str, *, xss: bool = True) -> Seeded:
    await demo.run(settings(url))
    engine = db_engine.create(url, pool_size=2)
    try:
        async with engine.begin() as conn:
            demo_jobs = list((await conn.execute(sa.text("SELECT id FROM jobs"))).scalars())
        pending, _ = await queue_jobs.enqueue(
            engine,
            kind=statuses.JobKind.COMPILE,
            brand_id=demo.brand_id("acme"),
            params={"force_refresh": True},
        )
        if xss:
            await add_xss_rows(engine)
    finally:
        await engine.dispose()
    return Seeded(url, pending.id, demo_jobs)


async def add_xss_rows(engine: sa_async.AsyncEngine) -> None:
    evidence = {
        "refreshed": [],
        "reused": [],
        "skipped": [],
        "failed": [
            {
                "source_id": str(XSS_SOURCE),
                "platform": "web",
                "capability": "crawl_pages",
                "reason": XSS,
                "run_id": str(XSS_RUN),
                "apify_run_id": XSS,
                "apify_status": "FAILED",
                "error_kind": "apify_run_failed",
                "error": XSS,
                "retryable": False,
            }
        ],
    }
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO source_connections (id, brand_id, platform, capability, identifier) "
                "VALUES (:id, :brand, 'web', 'crawl_pages', :ident)"
            ),
            {"id": XSS_SOURCE, "brand": XSS_BRAND, "ident": XSS},
        )
        await conn.execute(
            sa.text(
                "INSERT INTO jobs (id, brand_id, status, attempts, last_error, last_error_kind, "
                "evidence_status, started_at, finished_at) VALUES (:id, :brand, 'failed', 3, "
                ":err, :kind, CAST(:evidence AS jsonb), now() - interval '2 minutes', now())"
            ),
            {
                "id": XSS_JOB,
                "brand": XSS_BRAND,
                "err": XSS,
                "kind": XSS,
                "evidence": json.dumps(evidence),
            },
        )
        await conn.execute(
            sa.text(
                "INSERT INTO apify_runs (id, job_id, source_connection_id, brand_id, actor_id, "
                "input, apify_run_id, status, started_at, finished_at, error_kind, error_summary) "
                "VALUES (:id, :job, :source, :brand, 'apify/website-content-crawler', '{}', "
                ":apify_id, 'FAILED', now() - interval '90 seconds', now(), :err, :err)"
            ),
            {
                "id": XSS_RUN,
                "job": XSS_JOB,
                "source": XSS_SOURCE,
                "brand": XSS_BRAND,
                "apify_id": XSS,
                "err": XSS,
            },
        )


async def add_xss_rows_at(url: str) -> None:
    engine = db_engine.create(url, pool_size=1)
    try:
        await add_xss_rows(engine)
    finally:
        await engine.dispose()


# Two replicas as `run` names them (host:pid:suffix), each holding jobs it claimed, one of
# them on leases shorter than the other's. They beat once: a heartbeat interval of a minute
# keeps them live (three intervals) while a slow machine takes its screenshots.
WORKERS = (
    ("worker-7c9f-a:41:3f2a1c", "worker-7c9f-a", 41, 3, 1800.0),
    ("worker-7c9f-b:38:9e04b7", "worker-7c9f-b", 38, 2, 300.0),
)
WORKERS_BEAT_SECONDS = 60.0


async def add_workers(engine: sa_async.AsyncEngine) -> list[uuid.UUID]:
    """Register :data:`WORKERS` through the queue's own claim and heartbeat, each holding
    new jobs of the demo brands (ahead of every other pending job); returns their ids."""
    held: list[uuid.UUID] = []
    brands = iter(demo.brand_id(name) for name in demo.BRANDS[1:])
    for owner, host, pid, count, lease_seconds in WORKERS:
        for _ in range(count):
            job, _ = await queue_jobs.enqueue(
                engine, kind=statuses.JobKind.COMPILE, brand_id=next(brands, None), priority=-1
            )
            held.append(job.id)
        leases = await queue_jobs.claim(
            engine, owner=owner, limit=count, lease_seconds=lease_seconds
        )
        registration = queue_jobs.Registration(
            owner, host, pid, kairo_ingest.__version__, 4, WORKERS_BEAT_SECONDS
        )
        await queue_jobs.beat(engine, leases, lease_seconds, registration=registration)
    return held


async def add_workers_at(url: str) -> list[uuid.UUID]:
    engine = db_engine.create(url, pool_size=1)
    try:
        return await add_workers(engine)
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def client(
    url: str,
    *,
    host: str = "127.0.0.1:8081",
    login: bool = True,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the console app in this process (no socket), on ``url``.

    The console's token is CONSOLE_TOKEN unless ``console_token`` says otherwise; with
    ``login`` the client logs in first (so it holds a session cookie).
    """
    values: dict[str, object] = {"console_token": CONSOLE_TOKEN} | extra
    engine = db_engine.create(url, pool_size=2)
    app = console_server.app(settings(url, **values), engine)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{host}", headers=headers
        ) as http:
            if login:
                token = app.token
                response = await http.post("/login", data={"token": token})
                assert response.status_code == 303, response.text
            yield http
    finally:
        await app.aclose()
        await engine.dispose()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)
