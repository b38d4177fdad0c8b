"""Shared set-up for pipeline tests: real PostgreSQL, the simulator in this loop, real client."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import server as sim_server
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import sources, tables
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.queue import jobs as queue_jobs

TOKEN = "test-token-0123456789abcdef"

QUICK_RUNS: dict[str, Any] = {
    "seed": 3,
    "time_factor": 0.01,
    "ready_seconds": 1,
    "duration_min_seconds": 5,
    "duration_max_seconds": 20,
    "outcome_weights": {"SUCCEEDED": 1.0},
}

ALL_SOURCES = [
    ("instagram", "posts", "@acme"),
    ("instagram", "reels", "@acme"),
    ("tiktok", "profile_videos", "@acme"),
    ("youtube", "channel_videos", "https://www.youtube.com/@acme"),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/acme/"),
    ("web", "crawl_pages", "https://acme.example/"),
]


@dataclasses.dataclass
class Kit:
    engine: sa_async.AsyncEngine
    sim: sim_server.RunningSimulator
    apify: apify_client.ApifyClient

    def deps(self, **overrides: Any) -> deps_module.Deps:
        values: dict[str, Any] = {
            "engine": self.engine,
            "apify": self.apify,
            "disabled_capabilities": frozenset(),
            "freshness_ttl": dt.timedelta(hours=24),
            "run_deadline_seconds": 30.0,
            "source_concurrency": 8,
            "run_slots": asyncio.Semaphore(50),
        }
        values.update(overrides)
        return deps_module.Deps(**values)

    async def brand(
        self, pairs: list[tuple[str, str, str]] | None = None
    ) -> tuple[uuid.UUID, list[sources.Source]]:
        brand = uuid.uuid4()
        added = []
        for platform, capability, identifier in pairs or ALL_SOURCES:
            source, _ = await sources.add(
                self.engine,
                brand_id=brand,
                platform=platform,
                capability=capability,
                identifier=identifier,
            )
            added.append(source)
        return brand, added

    async def lease(
        self, brand: uuid.UUID, *, force_refresh: bool = False, max_attempts: int = 3
    ) -> queue_jobs.Lease:
        await queue_jobs.enqueue(
            self.engine,
            kind="compile",
            brand_id=brand,
            params={"force_refresh": force_refresh},
            max_attempts=max_attempts,
        )
        return await self.claim()

    async def claim(self, lease_seconds: float = 60) -> queue_jobs.Lease:
        leases = await queue_jobs.claim(
            self.engine, owner="test", limit=1, lease_seconds=lease_seconds
        )
        assert len(leases) == 1
        return leases[0]

    async def reclaim(self, lease: queue_jobs.Lease) -> queue_jobs.Lease:
        """What a takeover after a crash looks like: the lease expires, the job is claimed again."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(tables.jobs)
                .where(tables.jobs.c.id == lease.job_id)
                .values(status="pending", lease_token=None, lease_expires_at=None, lease_owner=None)
            )
        return await self.claim()

    async def count(self, table: sa.Table, *where: Any) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(sa.select(sa.func.count()).select_from(table).where(*where))
        return int(value or 0)

    async def rows(self, table: sa.Table, *where: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(table).where(*where))).all())
