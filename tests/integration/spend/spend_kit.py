"""Shared set-up for spend tests: accounts, tenants and a compile job against the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import server as sim_server
from kairo_ingest import config, secretbox
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import accounts, run_slots, sources, tables
from kairo_ingest.pipeline import compile_job, tenants
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import handlers

DEFAULT_TOKEN = "apify_api_defaultDEFAULTdefault0001"
TOKEN_A = "apify_api_tenantAAAAAAAAAAAAAAAAAA0001"
TOKEN_B = "apify_api_tenantBBBBBBBBBBBBBBBBBB0002"
KEY = secretbox.generate_key()

QUICK_RUNS: dict[str, Any] = {
    "seed": 5,
    "time_factor": 0.01,
    "ready_seconds": 1,
    "duration_min_seconds": 5,
    "duration_max_seconds": 20,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "accepted_tokens": [DEFAULT_TOKEN, TOKEN_A, TOKEN_B],
}

SOURCES = [("instagram", "posts", "@acme"), ("tiktok", "profile_videos", "@acme")]


def client(base_url: str, token: str) -> apify_client.ApifyClient:
    return apify_client.ApifyClient(
        base_url, token, backoff_base_seconds=0.01, backoff_cap_seconds=0.05
    )


@dataclasses.dataclass
class SpendKit:
    engine: sa_async.AsyncEngine
    sim: sim_server.RunningSimulator
    apify: apify_client.ApifyClient
    box: secretbox.SecretBox
    tenants: tenants.Tenants

    def deps(self, **overrides: Any) -> deps_module.Deps:
        values: dict[str, Any] = {
            "engine": self.engine,
            "apify": self.apify,
            "disabled_capabilities": frozenset(),
            "freshness_ttl": dt.timedelta(hours=24),
            "run_deadline_seconds": 30.0,
            "source_concurrency": 8,
            "run_slots": asyncio.Semaphore(50),
            "tenants": self.tenants,
        }
        values.update(overrides)
        return deps_module.Deps(**values)

    async def account(self, name: str, token: str, **limits: Any) -> accounts.Account:
        return await accounts.add(
            self.engine,
            name=name,
            token_ciphertext=self.box.encrypt(token),
            fingerprint=self.box.fingerprint(token),
            max_concurrent_runs=limits.get("max_concurrent_runs"),
            max_memory_mbytes=limits.get("max_memory_mbytes"),
            daily_cap_usd=limits.get("daily_cap_usd"),
        )

    async def compile_as_the_service(self, settings: config.Settings) -> compile_job.Result:
        """One compile job for a new brand (default account), with the deps ``run`` builds."""
        deps = handlers.pipeline_deps(settings, self.engine, self.apify)
        brand, _ = await self.brand(None)
        try:
            return await compile_job.run(deps, await self.lease(brand))
        finally:
            assert deps.tenants is not None
            await deps.tenants.aclose()

    async def brand(
        self, account: str | None, pairs: list[tuple[str, str, str]] | None = None
    ) -> tuple[uuid.UUID, list[sources.Source]]:
        brand = uuid.uuid4()
        added = []
        for platform, capability, identifier in pairs or SOURCES:
            source, _ = await sources.add(
                self.engine,
                brand_id=brand,
                platform=platform,
                capability=capability,
                identifier=identifier,
                account=account,
            )
            added.append(source)
        return brand, added

    async def lease(self, brand: uuid.UUID, *, force_refresh: bool = True) -> queue_jobs.Lease:
        await queue_jobs.enqueue(
            self.engine, kind="compile", brand_id=brand, params={"force_refresh": force_refresh}
        )
        leases = await queue_jobs.claim(self.engine, owner="test", limit=1, lease_seconds=60)
        assert len(leases) == 1
        return leases[0]

    async def count_slots(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT count(*) FROM run_slots")) or 0)

    async def dump(self) -> str:
        """Every row of every table as text: what a ``pg_dump`` of the data would show."""
        return await dump(self.engine)


async def dump(engine: sa_async.AsyncEngine, *only: str) -> str:
    """Every row of every table (or of the tables named) as text, like a ``pg_dump``."""
    async with engine.connect() as conn:
        names = (
            await conn.execute(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
                )
            )
        ).scalars()
        parts: list[str] = []
        for name in [n for n in names if not only or n in only]:
            rows = await conn.execute(sa.text(f'SELECT t::text FROM "{name}" t'))
            parts.extend(f"{name}: {r[0]}" for r in rows)
    return "\n".join(parts)


async def job_row(
    conn: sa_async.AsyncConnection, brand: uuid.UUID, *, running: bool = True
) -> tuple[uuid.UUID, uuid.UUID]:
    """A job of ``brand``, running under a live lease or pending: (id, lease token)."""
    token = uuid.uuid4()
    job = await conn.scalar(
        sa.insert(tables.jobs)
        .values(
            brand_id=brand,
            status="running" if running else "pending",
            lease_token=token if running else None,
            lease_expires_at=sa.text("now() + interval '1 minute'") if running else None,
        )
        .returning(tables.jobs.c.id)
    )
    assert job is not None
    return job, token


async def slot_row(
    conn: sa_async.AsyncConnection,
    brand: uuid.UUID,
    job: tuple[uuid.UUID, uuid.UUID],
    *,
    granted: bool = False,
    memory_mbytes: int = 1024,
) -> uuid.UUID:
    """A run of ``job`` (id, lease token) with its slot row in account ``acct``."""
    source = await conn.scalar(
        sa.insert(tables.source_connections)
        .values(
            brand_id=brand, platform="web", capability="crawl_pages", identifier=str(uuid.uuid4())
        )
        .returning(tables.source_connections.c.id)
    )
    run = await conn.scalar(
        sa.insert(tables.apify_runs)
        .values(job_id=job[0], source_connection_id=source, brand_id=brand, actor_id="a", input={})
        .returning(tables.apify_runs.c.id)
    )
    assert run is not None
    claim = run_slots.Claim(run, "acct", brand, job[0], job[1], memory_mbytes)
    await run_slots.register(conn, claim, granted=granted)
    return run
