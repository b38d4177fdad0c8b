"""The worker's periodic maintenance, one unit each: the reaper, the promoter (deferred
jobs made ready when due), the sampler, the pruner, the registry's pruner, the raw-item
partitions (made ahead, dropped past KAIRO_RAW_RETENTION_DAYS), and the loops the service
adds (the run ledger, ``pipeline/ledger.py``).

Each unit does one round per call; :func:`every` runs a unit at its interval until the
worker stops, retrying a failed round with the worker's loop backoff (never longer than
the interval), so a database restart only delays maintenance. Every worker runs them;
they are set-based and safe to run from many processes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, metrics
from kairo_ingest.db import raw_partitions
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.domain import statuses
from kairo_ingest.queue import endings, upkeep
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import parameters, pg_queue, ports

_log = logs.get("kairo_ingest.worker")

FULL_STATS_EVERY = 20  # samples: finished-job counts refresh every 20 stats intervals


Work = Callable[[], Awaitable[None]]
Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""A unit with a loop of its own (the run ledger's), run until the stop event is set."""


async def every(
    name: str,
    interval: float,
    work: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    rng: random.Random,
) -> None:
    """Run ``work`` every ``interval`` seconds until ``stop`` is set."""
    failures = 0
    while not stop.is_set():
        try:
            await work()
            failures = 0
            pause = interval
        except Exception as exc:  # noqa: BLE001 - periodic work retries with backoff
            failures += 1
            pause = min(interval, retry_rules.retry_delay_seconds(failures, rng))
            log_loop_error(name, exc, failures, pause)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await stop.wait()


def start(
    engine: sa_async.AsyncEngine,
    config: parameters.WorkerConfig,
    stop: asyncio.Event,
    rng: random.Random,
    *,
    on_requeued: Callable[[], None],
    caps: endings.Caps = endings.DEFAULT_CAPS,
    loops: Sequence[tuple[str, Loop]] = (),
    queue: ports.JobQueue | None = None,
) -> list[asyncio.Task[None]]:
    """Start the reaper, the promoter, the sampler, the registry's pruner, the raw-item
    partitions' upkeep, (with a retention) the pruner and the ``loops`` the service composed
    (the run ledger), each in a task. The reaper and the promoter go through ``queue``
    (the queue port; by default the PostgreSQL adapter on ``engine``)."""
    port = queue or pg_queue.PostgresJobQueue(engine)
    units: list[tuple[str, float, Work]] = [
        (
            "reap",
            config.reap_interval_seconds,
            Reaper(
                port,
                base_seconds=config.retry_base_seconds,
                cap_seconds=config.retry_cap_seconds,
                on_requeued=on_requeued,
                caps=caps,
            ),
        ),
        ("promote", config.promote_every_seconds, Promoter(port, on_promoted=on_requeued)),
        ("stats", config.stats_interval_seconds, Sampler(engine)),
        (
            "raw_partitions",
            config.raw_partition_interval_seconds,
            RawPartitions(engine, config.raw_retention),
        ),
        ("forget_workers", config.forget_workers_interval_seconds, WorkerPruner(engine)),
    ]
    if config.retention is not None:
        units.append(("prune", config.prune_interval_seconds, Pruner(engine, config.retention)))
    tasks = [
        asyncio.create_task(every(name, interval, unit, stop, rng), name=f"kairo-worker-{name}")
        for name, interval, unit in units
    ]
    tasks += [asyncio.create_task(loop(stop), name=f"kairo-worker-{name}") for name, loop in loops]
    return tasks


class Reaper:
    """Reclaims expired leases of any worker (with the retry backoff); wakes the claim
    loop when it requeued something."""

    def __init__(
        self,
        queue: ports.JobQueue,
        *,
        base_seconds: float,
        cap_seconds: float,
        on_requeued: Callable[[], None],
        caps: endings.Caps = endings.DEFAULT_CAPS,
    ) -> None:
        self._queue = queue
        self._base = base_seconds
        self._cap = cap_seconds
        self._on_requeued = on_requeued
        self._caps = caps

    async def __call__(self) -> None:
        requeued, _failed = await self._queue.reap(
            base_seconds=self._base, cap_seconds=self._cap, caps=self._caps
        )
        if requeued:
            self._on_requeued()


class Promoter:
    """Makes deferred jobs ready once their backoff or snooze is over (and announces them
    with NOTIFY); wakes the claim loop when it promoted something."""

    def __init__(self, queue: ports.JobQueue, *, on_promoted: Callable[[], None]) -> None:
        self._queue = queue
        self._on_promoted = on_promoted

    async def __call__(self) -> None:
        if await self._queue.promote():
            self._on_promoted()


class WorkerPruner:
    """Forgets the registry rows of workers long stopped or silent."""

    def __init__(self, engine: sa_async.AsyncEngine) -> None:
        self._engine = engine

    async def __call__(self) -> None:
        await upkeep.forget_workers(self._engine)


class Sampler:
    """Queue depth and the oldest ready job's age for the metrics: active counts every
    time (cheap), counts of finished jobs (which scan more) every FULL_STATS_EVERY; and
    ready and running jobs per kind, which the autoscaler reads (a kind that had jobs and
    has none now reads 0, and ``compile`` always has its series)."""

    def __init__(self, engine: sa_async.AsyncEngine) -> None:
        self._engine = engine
        self._samples = 0
        self._kinds: set[str] = {statuses.JobKind.COMPILE.value}

    async def __call__(self) -> None:
        self._samples += 1
        if self._samples % FULL_STATS_EVERY == 1:
            sample = await queue_jobs.stats(self._engine)
            for status in statuses.JobStatus:
                metrics.QUEUE_DEPTH.labels(status=status.value).set(sample["counts"][status.value])
        else:
            sample = await queue_jobs.depth(self._engine)
            for status in (statuses.JobStatus.PENDING, statuses.JobStatus.RUNNING):
                metrics.QUEUE_DEPTH.labels(status=status.value).set(sample[status.value])
        metrics.OLDEST_READY_AGE.set(sample["oldest_ready_age_seconds"] or 0.0)
        per_kind = await queue_jobs.ready_by_kind(self._engine)
        self._kinds |= per_kind.keys()
        for kind in self._kinds:
            counts = per_kind.get(kind, queue_jobs.KindCounts(ready=0, running=0))
            metrics.READY_JOBS.labels(kind=kind).set(counts.ready)
            metrics.RUNNING_JOBS.labels(kind=kind).set(counts.running)


class Pruner:
    """Deletes finished jobs past the retention, in bounded batches."""

    def __init__(self, engine: sa_async.AsyncEngine, retention: dt.timedelta) -> None:
        self._engine = engine
        self._retention = retention

    async def __call__(self) -> None:
        await queue_jobs.prune(self._engine, older_than=self._retention)


class RawPartitions:
    """Makes raw items' daily partitions ahead and drops those past the retention
    (:mod:`kairo_ingest.db.raw_partitions`); one process at a time does a round."""

    def __init__(self, engine: sa_async.AsyncEngine, retention: dt.timedelta | None) -> None:
        self._engine = engine
        self._retention = retention

    async def __call__(self) -> None:
        done = await raw_partitions.maintain(self._engine, retention=self._retention)
        if done.ahead_seconds is not None:
            metrics.RAW_PARTITIONS_AHEAD.set(done.ahead_seconds)
        metrics.RAW_PARTITIONS_DROPPED.inc(len(done.dropped))


async def report_drained(
    queue: ports.JobQueue, kinds: Sequence[str], owner: str
) -> queue_jobs.Waiting | None:
    """Drain mode's last word: how many jobs still wait on a backoff, and until when
    (logged, and returned for ``run`` to print; None when the database cannot say)."""
    try:
        waiting = await queue.waiting_on_backoff(kinds=kinds)
    except Exception as exc:  # noqa: BLE001 - the report is best effort
        log_loop_error("drain_report", exc, 1, 0.0)
        _log.info("queue_drained", owner=owner)
        return None
    _log.info(
        "queue_drained",
        owner=owner,
        waiting_on_backoff=waiting.jobs,
        next_available_at=None if waiting.next_at is None else waiting.next_at.isoformat(),
    )
    return waiting


def log_loop_error(loop: str, exc: BaseException, failures: int, retry_in: float) -> None:
    """One line per failed round of a worker loop: its classified kind, never a traceback."""
    kind, retryable, _ = errors.classify(exc)
    _log.warning(
        "worker_loop_error",
        loop=loop,
        error_kind=kind.value,
        retryable=retryable,
        error=errors.describe(exc),
        failures=failures,
        retry_in_seconds=round(retry_in, 3),
    )
