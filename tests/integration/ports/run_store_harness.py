"""The run-store port's adapters, each behind one harness: the in-memory store (no
database) and the PostgreSQL adapter on the test database, each with a job whose lease
the suite holds (and can lose) and a source of that job's brand."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import sources, tables
from kairo_ingest.pipeline import pg_runs, ports, tx
from kairo_ingest.queue import jobs as queue_jobs
from support import memory_runs


class Harness(Protocol):
    store: ports.RunStore
    lease: queue_jobs.Lease
    source: sources.Source

    async def now(self) -> dt.datetime:
        """The store's clock."""
        ...

    async def lose_lease(self) -> None:
        """The job's lease moves on (a reclaim): the suite's lease is stale from now."""
        ...

    async def raw_items(self, run_id: uuid.UUID) -> int:
        """How many raw items of the run are stored."""
        ...


class Unstarted(Protocol):
    async def start(self) -> Harness: ...


def _source(brand_id: uuid.UUID, now: dt.datetime) -> sources.Source:
    return sources.Source(
        id=uuid.uuid4(),
        brand_id=brand_id,
        platform="web",
        capability="crawl_pages",
        identifier="https://acme.example/",
        enabled=True,
        settings={},
        created_at=now,
        updated_at=now,
    )


class MemoryHarness:
    def __init__(self) -> None:
        self.store = self.memory = memory_runs.MemoryRunStore()
        brand = uuid.uuid4()
        self.lease = queue_jobs.Lease(
            job_id=uuid.uuid4(),
            token=uuid.uuid4(),
            owner="suite",
            kind="compile",
            brand_id=brand,
            attempts=1,
            max_attempts=3,
            params={},
            attempt_number=1,
        )
        self.memory.hold(self.lease)
        self.source = _source(brand, self.memory.clock.now())

    async def start(self) -> MemoryHarness:
        return self

    async def now(self) -> dt.datetime:
        return self.memory.clock.now()

    async def lose_lease(self) -> None:
        self.memory.lose(self.lease)

    async def raw_items(self, run_id: uuid.UUID) -> int:
        return sum(1 for key in self.memory.raw if key[0] == run_id)


class PostgresHarness:
    def __init__(self, engine: sa_async.AsyncEngine) -> None:
        self.engine = engine
        self.store = pg_runs.PostgresRunStore(engine, tx.DEFAULT)

    async def start(self) -> PostgresHarness:
        brand = uuid.uuid4()
        self.source, _ = await sources.add(
            self.engine,
            brand_id=brand,
            platform="web",
            capability="crawl_pages",
            identifier="https://acme.example/",
        )
        await queue_jobs.enqueue(self.engine, kind="compile", brand_id=brand)
        leases = await queue_jobs.claim(self.engine, owner="suite", limit=1, lease_seconds=60)
        assert len(leases) == 1
        self.lease = leases[0]
        return self

    async def now(self) -> dt.datetime:
        async with self.engine.connect() as conn:
            value: dt.datetime = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
        return value

    async def lose_lease(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(tables.jobs)
                .where(tables.jobs.c.id == self.lease.job_id)
                .values(lease_token=uuid.uuid4())
            )

    async def raw_items(self, run_id: uuid.UUID) -> int:
        t = tables.raw_apify_items
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                sa.select(sa.func.count()).select_from(t).where(t.c.apify_run_id == run_id)
            )
        return int(value or 0)
