"""The queue port's adapters, each behind one harness: the in-memory queue (no database)
and the PostgreSQL adapter on the test database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import pg_queue, ports
from support import memory_queue


@dataclasses.dataclass(frozen=True)
class JobView:
    """What the suite reads back of a job, the same from both adapters."""

    status: str
    attempts: int
    claims: int
    interruptions: int
    snoozes: int
    deferred: bool
    ready_in_seconds: float  # available_at - now
    lease_token: uuid.UUID | None
    lease_left_seconds: float | None  # lease_expires_at - now
    last_error_kind: str | None


class Harness(Protocol):
    queue: ports.JobQueue

    async def enqueue(
        self,
        kind: str = "k",
        *,
        brand_id: uuid.UUID | None = None,
        priority: int = 0,
        max_attempts: int = 5,
    ) -> uuid.UUID: ...

    async def job(self, job_id: uuid.UUID) -> JobView: ...

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for every deadline the queue keeps (backoffs, leases)."""
        ...

    async def request_cancel(self, job_id: uuid.UUID) -> None: ...


class MemoryHarness:
    def __init__(self) -> None:
        self.queue = memory_queue.MemoryJobQueue()

    async def enqueue(
        self,
        kind: str = "k",
        *,
        brand_id: uuid.UUID | None = None,
        priority: int = 0,
        max_attempts: int = 5,
    ) -> uuid.UUID:
        job_id = await self.queue.enqueue(
            kind=kind, brand_id=brand_id, priority=priority, max_attempts=max_attempts
        )
        self.queue.clock.advance(0.001)  # enqueued one after the other, as in the database
        return job_id

    async def job(self, job_id: uuid.UUID) -> JobView:
        job = self.queue.jobs[job_id]
        now = self.queue.clock.now()
        return JobView(
            status=job.status,
            attempts=job.attempts,
            claims=job.claims,
            interruptions=job.interruptions,
            snoozes=job.snoozes,
            deferred=job.deferred,
            ready_in_seconds=(job.available_at - now).total_seconds(),
            lease_token=job.lease_token,
            lease_left_seconds=None
            if job.lease_expires_at is None
            else (job.lease_expires_at - now).total_seconds(),
            last_error_kind=job.last_error_kind,
        )

    async def advance(self, seconds: float) -> None:
        self.queue.clock.advance(seconds)

    async def request_cancel(self, job_id: uuid.UUID) -> None:
        self.queue.request_cancel(job_id)


class PostgresHarness:
    """The database clock cannot be moved: ``advance`` moves the rows' instants back
    instead, which every statement (claim, promote, reap) reads the same way."""

    def __init__(self, engine: sa_async.AsyncEngine) -> None:
        self.engine = engine
        self.queue = pg_queue.PostgresJobQueue(engine)

    async def enqueue(
        self,
        kind: str = "k",
        *,
        brand_id: uuid.UUID | None = None,
        priority: int = 0,
        max_attempts: int = 5,
    ) -> uuid.UUID:
        row, _ = await queue_jobs.enqueue(
            self.engine, kind=kind, brand_id=brand_id, priority=priority, max_attempts=max_attempts
        )
        return row.id

    async def job(self, job_id: uuid.UUID) -> JobView:
        row = await queue_jobs.get(self.engine, job_id)
        assert row is not None
        async with self.engine.connect() as conn:
            now: dt.datetime = (await conn.execute(sa.text("SELECT now()"))).scalar_one()
        return JobView(
            status=row.status,
            attempts=row.attempts,
            claims=row.claims,
            interruptions=row.interruptions,
            snoozes=row.snoozes,
            deferred=row.deferred,
            ready_in_seconds=(row.available_at - now).total_seconds(),
            lease_token=row.lease_token,
            lease_left_seconds=None
            if row.lease_expires_at is None
            else (row.lease_expires_at - now).total_seconds(),
            last_error_kind=row.last_error_kind,
        )

    async def advance(self, seconds: float) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "UPDATE jobs SET available_at = available_at - make_interval(secs => :s),"
                    " lease_expires_at = lease_expires_at - make_interval(secs => :s)"
                ),
                {"s": seconds},
            )

    async def request_cancel(self, job_id: uuid.UUID) -> None:
        await queue_jobs.cancel(self.engine, job_id)
