"""The queue's upkeep beside the reaper and the pruner: making deferred jobs ready when
they are due, and the ``workers`` registry (each process's row is upserted by its own
heartbeat, :func:`kairo_ingest.queue.jobs.beat`)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from kairo_ingest import logs, metrics
from kairo_ingest.db import dberrors
from kairo_ingest.queue import binds, sql

_log = logs.get("kairo_ingest.queue")

PROMOTE_BATCH = 1000
# A worker's row is forgotten this long after it stopped, or stopped beating.
FORGET_WORKERS_AFTER = dt.timedelta(days=1)


async def promote(bind: binds.Bind, *, batch_size: int = PROMOTE_BATCH) -> int:
    """Make every deferred job whose backoff or snooze is over ready to claim, in bounded
    batches, and announce them (NOTIFY on the queue's channel). Returns how many."""
    total = 0
    while True:
        with dberrors.mapped("promote"):
            async with binds.statement(bind) as conn:
                row = (await conn.execute(sql.PROMOTE, {"limit": batch_size})).one()
        total += int(row.promoted)
        if row.promoted < batch_size:
            break
    if total:
        metrics.PROMOTED.inc(total)
        _log.debug("deferred_jobs_promoted", jobs=total)
    return total


@dataclasses.dataclass(frozen=True, slots=True)
class Worker:
    """One row of the ``workers`` registry, with what the jobs table says about it."""

    owner: str
    hostname: str
    pid: int
    version: str
    concurrency: int
    heartbeat_interval_seconds: float
    started_at: dt.datetime
    last_beat_at: dt.datetime
    stopped_at: dt.datetime | None
    seconds_since_beat: float
    held_jobs: int

    @property
    def alive(self) -> bool:
        """Not stopped, and it beat within three of its intervals."""
        return (
            self.stopped_at is None
            and self.seconds_since_beat <= 3 * self.heartbeat_interval_seconds
        )


async def workers(bind: binds.Bind) -> list[Worker]:
    """Every worker the registry knows, newest beat first."""
    with dberrors.mapped("workers"):
        async with binds.statement(bind) as conn:
            rows = (await conn.execute(sql.LIST_WORKERS)).all()
    return [Worker(**dict(row._mapping)) for row in rows]


async def stop_worker(bind: binds.Bind, owner: str) -> None:
    """Mark ``owner`` stopped in the registry (in a transaction of its own on an idle
    connection the caller holds)."""
    with dberrors.mapped("stop_worker"):
        async with binds.transaction(bind) as conn:
            await conn.execute(sql.STOP_WORKER, {"owner": owner})


async def forget_workers(
    bind: binds.Bind, *, older_than: dt.timedelta = FORGET_WORKERS_AFTER
) -> int:
    """Delete the rows of workers that stopped, or stopped beating, ``older_than`` ago."""
    with dberrors.mapped("forget_workers"):
        async with binds.statement(bind) as conn:
            result = await conn.execute(
                sql.FORGET_WORKERS, {"older_than_seconds": older_than.total_seconds()}
            )
    return int(result.rowcount)
