"""What a handler sees (:class:`JobContext`, :class:`Outcome`) and what the worker keeps
per job it holds (:class:`Slot`)."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.queue import jobs as queue_jobs


@dataclasses.dataclass
class Outcome:
    """What a handler returns. ``error`` set: the attempt failed (classified for retry)."""

    evidence_status: dict[str, Any] | None = None
    error: BaseException | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class JobContext:
    """What a handler gets. ``lease_lost`` is set (and the task cancelled) when the job's
    lease is lost; every write the handler makes should be fenced with
    :func:`kairo_ingest.queue.jobs.fence` inside its transaction. The task's log context
    carries job_id and brand_id, so module loggers name the job."""

    lease: queue_jobs.Lease
    engine: sa_async.AsyncEngine
    lease_lost: asyncio.Event


Handler = Callable[[JobContext], Awaitable[Outcome]]


class SlotState(enum.Enum):
    RUNNING = "running"  # the handler runs (or waits for the job's previous task to end)
    FINISHING = "finishing"  # the handler returned; its final write is queued
    LOST = "lost"  # the lease was lost or given up; nothing more is written by the handler
    CANCELLING = "cancelling"  # an operator cancelled the job; the keeper ends it cancelled
    ABANDONED = "abandoned"  # cancelled at shutdown; released by the worker


@dataclasses.dataclass(eq=False)
class Slot:
    """One job this process holds a lease on."""

    lease: queue_jobs.Lease
    context: JobContext
    extended_at: float  # monotonic instant at or before the database last set the expiry
    state: SlotState = SlotState.RUNNING
    task: asyncio.Task[None] | None = None
