"""The job queue's API: enqueue, claim, heartbeat, fence, cancel, retry, inspection, prune.

The end of an attempt (complete, fail, release, give-up, reap, hand-back) is in
:mod:`kairo_ingest.queue.endings`; an attempt history in :mod:`kairo_ingest.queue.history`;
promotion of deferred jobs and the worker registry in :mod:`kairo_ingest.queue.upkeep`.

A claimed job is a :class:`Lease`: the row's id plus a fencing token that only this
claim holds. Every write a lease holder makes is fenced by that token and by
``status = 'running'``; when the row has moved on (reclaimed by the reaper after the
lease expired, cancelled by an operator, completed by a newer owner) the write changes
nothing, is logged as ``lease_lost`` and counted in ``kairo_fenced_writes_rejected_total``,
and the caller gets ``False`` / ``None`` / an empty set, never an exception that could
lead to an overwrite. Inside a caller's own transaction, :func:`fence` raises
:class:`~kairo_ingest.errors.LeaseLostError` instead, so the transaction rolls back.

Operations take a :data:`~kairo_ingest.queue.binds.Bind`: an engine or a connection the
caller holds (enqueue inside a caller's transaction commits the job, and its NOTIFY,
together with the caller's other writes).

All SQL lives in :mod:`kairo_ingest.queue.sql`. Lease instants come from the database
clock; the only times this module handles are durations in seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, metrics
from kairo_ingest.db import dberrors
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.domain import statuses, tracecontext
from kairo_ingest.queue import binds, sql

_log = logs.get("kairo_ingest.queue")

Bind = binds.Bind

PENDING_PER_BRAND_INDEX = "uq_jobs_pending_per_brand"
PRUNE_BATCH = 1000
DEFAULT_MAX_ATTEMPTS = retry_rules.DEFAULT_MAX_ATTEMPTS


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """A claimed job. ``token`` fences every write; ``attempts`` counts the attempts a
    handler spent, this one included (refunded ones do not count); ``attempt_number``
    numbers this claim in the job's history (``job_attempts.number``, every claim counts).

    Key collections by ``job_id``: ``params`` is a dict, so a Lease is not hashable.
    """

    job_id: uuid.UUID
    token: uuid.UUID
    owner: str
    kind: str
    brand_id: uuid.UUID | None
    attempts: int
    max_attempts: int
    params: dict[str, Any]
    attempt_number: int = 0
    traceparent: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class JobRow:
    """Every column of one ``jobs`` row."""

    id: uuid.UUID
    kind: str
    brand_id: uuid.UUID | None
    status: str
    priority: int
    attempts: int
    max_attempts: int
    available_at: dt.datetime
    lease_owner: str | None
    lease_token: uuid.UUID | None
    lease_expires_at: dt.datetime | None
    params: dict[str, Any]
    evidence_status: dict[str, Any] | None
    last_error: str | None
    last_error_kind: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    claims: int = 0
    attempt_started_at: dt.datetime | None = None
    interruptions: int = 0
    snoozes: int = 0
    deferred: bool = False
    cancel_requested_at: dt.datetime | None = None
    traceparent: str | None = None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> JobRow:
        return cls(**{name: row._mapping[name] for name in sql.JOB_COLUMNS})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: UUIDs and timestamps (ISO 8601) as strings."""
        out: dict[str, Any] = {}
        for name in sql.JOB_COLUMNS:
            value = getattr(self, name)
            if isinstance(value, uuid.UUID):
                value = str(value)
            elif isinstance(value, dt.datetime):
                value = value.isoformat()
            out[name] = value
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat's result, by job id.

    ``extended``: the lease now runs ``lease_seconds`` from the database's now().
    ``busy``: still ours, but another transaction held the row (a fenced pipeline
    transaction, a cancel in progress); not extended this time, try on the next beat.
    ``lost``: the row is no longer ours (reclaimed, finished or deleted).
    ``cancelling``: still ours, and an operator asked to cancel it: stop it.
    """

    extended: frozenset[uuid.UUID]
    busy: frozenset[uuid.UUID]
    lost: frozenset[uuid.UUID]
    cancelling: frozenset[uuid.UUID] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """What a heartbeat tells the ``workers`` registry about its process."""

    owner: str
    hostname: str
    pid: int
    version: str
    concurrency: int
    heartbeat_interval_seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class Waiting:
    """Pending jobs that wait on a backoff or snooze: how many, and when the first is ready."""

    jobs: int
    next_at: dt.datetime | None

    def describe(self) -> str:
        if not self.jobs or self.next_at is None:
            return "no job waits on a backoff"
        return (
            f"{self.jobs} job{'s' if self.jobs != 1 else ''} wait{'' if self.jobs != 1 else 's'} "
            f"on a backoff; the first is ready at {self.next_at.isoformat()}"
        )


def _lease(row: sa.Row[Any]) -> Lease:
    # By position (sql.LEASE_COLUMNS' order): a claim parses hundreds of rows at a time,
    # and a row's mapping view costs more than the rest of the parse.
    job_id, token, owner, kind, brand_id, attempts, max_attempts, params, claims, parent = tuple(
        row
    )
    return Lease(
        job_id, token, owner, kind, brand_id, attempts, max_attempts, params or {}, claims, parent
    )


def note_lease_lost(operation: str, lease: Lease) -> None:
    """A fenced write found the lease gone: log it and count it."""
    metrics.FENCED_WRITES.labels(operation=operation).inc()
    _log.warning(
        "lease_lost",
        operation=operation,
        job_id=str(lease.job_id),
        owner=lease.owner,
        attempt=lease.attempts,
    )


# ---------------------------------------------------------------------------------------
# Enqueue


async def enqueue(
    bind: Bind,
    *,
    kind: str,
    brand_id: uuid.UUID | None,
    params: Mapping[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    traceparent: str | None = None,
) -> tuple[JobRow, bool]:
    """Add a job, or coalesce into the brand's *pending* job of this kind.

    Returns ``(job, created)``. Folding into a pending job never drops what was asked: it
    takes the strongest of both requests (``force_refresh`` OR'ed, the lower ``priority``
    value, the most attempts left) and makes the job ready now (its backoff is reset);
    its other parameters stay. While the brand's job of this kind runs, a new pending
    job is created: its follow-up (claimed once the running one has finished); further
    enqueues coalesce into that follow-up. A created job is announced with NOTIFY by the
    same statement. Lower ``priority`` values are claimed first. Given a connection inside
    a transaction, the job (and its NOTIFY) commit with the caller's other writes.

    ``traceparent`` (W3C Trace Context) is stored with the job, and the job's span
    continues that trace; a job folded into keeps the first request's.
    """
    if max_attempts < 1:
        raise errors.UsageError("max_attempts must be at least 1")
    parent = None
    if traceparent is not None:
        parent = tracecontext.normalized(traceparent)
        if parent is None:
            raise errors.UsageError(
                f"traceparent must be a W3C traceparent such as {tracecontext.EXAMPLE}"
            )
    values = {
        "kind": kind,
        "brand_id": brand_id,
        "params": binds.as_json(params or {}),
        "priority": priority,
        "max_attempts": max_attempts,
        "traceparent": parent,
    }
    with dberrors.mapped("enqueue"):
        async with binds.statement(bind) as conn:
            row = (await conn.execute(sql.ENQUEUE, values)).one()
    return JobRow.from_row(row), bool(row.inserted)


async def enqueue_many(
    bind: Bind,
    *,
    kind: str,
    count: int,
    params: Mapping[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> int:
    """Add ``count`` identical brand-less jobs in one statement and one NOTIFY."""
    if count <= 0:
        return 0
    with dberrors.mapped("enqueue_many"):
        async with binds.statement(bind) as conn:
            created = (
                await conn.execute(
                    sql.ENQUEUE_MANY,
                    {
                        "kind": kind,
                        "count": count,
                        "params": binds.as_json(params or {}),
                        "priority": priority,
                        "max_attempts": max_attempts,
                    },
                )
            ).one()
    return int(created.created)


# ---------------------------------------------------------------------------------------
# The lease holder's operations


async def claim(
    bind: Bind,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    kinds: Collection[str] | None = None,
    planner_set: bool = False,
) -> list[Lease]:
    """Claim up to ``limit`` ready jobs (of ``kinds``, when given) in one statement.

    The statement runs in a transaction of its own with the planner setting it needs set
    locally (:data:`sql.CLAIM_PLANNER`); give it an engine or a connection that is not in
    AUTOCOMMIT mode. With ``planner_set``, ``bind`` is a connection on which
    :func:`set_claim_planner` already ran for the session: the claim is then one
    statement, one round trip, in whatever mode the connection is.
    """
    if limit <= 0:
        return []
    params = {
        "owner": owner,
        "limit": limit,
        "lease_seconds": lease_seconds,
        "kinds": None if kinds is None else list(kinds),
    }
    with dberrors.mapped("claim"):
        if planner_set:
            assert isinstance(bind, sa_async.AsyncConnection)
            rows = (await bind.execute(sql.CLAIM, params)).all()
        else:
            async with binds.transaction(bind) as conn:
                await conn.execute(sql.CLAIM_PLANNER)
                rows = (await conn.execute(sql.CLAIM, params)).all()
    leases = [_lease(row) for row in rows]
    for kind, n in _count_by_kind(leases).items():
        metrics.JOBS_CLAIMED.labels(kind=kind).inc(n)
    return leases


async def set_claim_planner(conn: sa_async.AsyncConnection) -> None:
    """Turn bitmap scans off for ``conn``'s session (see :data:`sql.CLAIM_PLANNER_SESSION`):
    only on a direct connection that runs nothing but claims and is never pooled again."""
    with dberrors.mapped("claim"):
        await conn.execute(sql.CLAIM_PLANNER_SESSION)


def _count_by_kind(leases: Sequence[Lease]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for lease in leases:
        counts[lease.kind] = counts.get(lease.kind, 0) + 1
    return counts


async def beat(
    bind: Bind,
    leases: Collection[Lease],
    lease_seconds: float,
    *,
    statement_timeout_seconds: float | None = None,
    registration: Registration | None = None,
) -> Beat:
    """Extend every given lease in one statement; report extended, busy, lost and
    cancelling ids. With ``registration`` the same statement marks the process alive in
    the ``workers`` registry (so a beat runs even with no lease to extend).

    With ``statement_timeout_seconds`` the statement runs in a short transaction whose
    ``statement_timeout`` is set locally (nothing stays on the session, so this is safe
    behind a transaction-mode pooler).
    """
    if not leases and registration is None:
        return Beat(frozenset(), frozenset(), frozenset())
    ids = [lease.job_id for lease in leases]
    tokens = [lease.token for lease in leases]
    values: dict[str, Any] = {
        "ids": ids,
        "tokens": tokens,
        "lease_seconds": lease_seconds,
        "owner": None,
        "hostname": None,
        "pid": None,
        "version": None,
        "concurrency": None,
        "interval_seconds": None,
    }
    if registration is not None:
        values.update(
            owner=registration.owner,
            hostname=registration.hostname,
            pid=registration.pid,
            version=registration.version,
            concurrency=registration.concurrency,
            interval_seconds=registration.heartbeat_interval_seconds,
        )
    with dberrors.mapped("heartbeat"):
        if statement_timeout_seconds is None:
            async with binds.statement(bind) as conn:
                rows = (await conn.execute(sql.HEARTBEAT, values)).all()
        else:
            async with binds.transaction(bind) as conn:
                ms = max(1, int(statement_timeout_seconds * 1000))
                await conn.execute(sql.BEAT_TIMEOUT, {"ms": str(ms)})
                rows = (await conn.execute(sql.HEARTBEAT, values)).all()
    extended: set[uuid.UUID] = set()
    busy: set[uuid.UUID] = set()
    lost: set[uuid.UUID] = set()
    cancelling: set[uuid.UUID] = set()
    for row in rows:
        if row.extended:
            extended.add(row.id)
        elif row.held:
            busy.add(row.id)
        else:
            lost.add(row.id)
        if row.cancelling and (row.extended or row.held):
            cancelling.add(row.id)
    return Beat(frozenset(extended), frozenset(busy), frozenset(lost), frozenset(cancelling))


def is_pending_conflict(exc: BaseException) -> bool:
    """The brand already has a pending job (the db boundary names the violated index)."""
    return isinstance(exc, errors.DatabaseConstraintError) and (
        exc.constraint_name == PENDING_PER_BRAND_INDEX or PENDING_PER_BRAND_INDEX in exc.message
    )


async def fence(conn: sa_async.AsyncConnection, lease: Lease) -> None:
    """Inside the caller's transaction: hold the job row FOR KEY SHARE while it is still ours.

    Raises :class:`errors.LeaseLostError` when it is not, so the caller's transaction
    rolls back. A reclaim, cancel or completion of the job waits until the caller's
    transaction ends, so the caller's writes never commit after the lease moved on; the
    lease holder's heartbeat does not wait (see :mod:`kairo_ingest.queue.sql`).
    """
    with dberrors.mapped("fence"):
        row = (await conn.execute(sql.FENCE, {"id": lease.job_id, "token": lease.token})).first()
    if row is None:
        note_lease_lost("fence", lease)
        raise errors.LeaseLostError(f"job {lease.job_id}: lease of {lease.owner} was lost")


# ---------------------------------------------------------------------------------------
# Maintenance


async def cancel(bind: Bind, job_id: uuid.UUID) -> JobRow | None:
    """Cancel a job, at once and without waiting behind its page transactions.

    A pending job is cancelled. A running job is marked (``cancel_requested_at``) and
    returned still ``running``: its lease holder stops at its next heartbeat and ends it
    ``cancelled`` (the reaper does, if the holder is gone). None when the job does not
    exist; a job already cancelled or marked is returned as it is; a succeeded or failed
    job raises :class:`errors.UsageError`.
    """
    with dberrors.mapped("cancel"):
        async with binds.statement(bind) as conn:
            row = (
                await conn.execute(
                    sql.CANCEL, {"id": job_id, "error_kind": errors.ErrorKind.CANCELLED.value}
                )
            ).first()
            if row is None:
                row = (await conn.execute(sql.SELECT_JOB, {"id": job_id})).first()
                if row is None:
                    return None
                job = JobRow.from_row(row)
                if job.status != statuses.JobStatus.CANCELLED and job.cancel_requested_at is None:
                    raise errors.UsageError(
                        f"job {job_id} is {job.status}; only pending or running jobs can be "
                        "cancelled"
                    )
                return job
    job = JobRow.from_row(row)
    _log.info("job_cancelled", job_id=str(job_id), status=job.status)
    return job


async def retry(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> JobRow | None:
    """Put a failed or cancelled job back to pending, ready now, with attempts reset.

    None when the job does not exist. Raises :class:`errors.UsageError` when the job is
    not failed or cancelled, or when its brand already has a pending job of the kind (with
    only a running one, the retried job becomes its follow-up).
    """
    try:
        with dberrors.mapped("retry"):
            async with engine.begin() as conn:
                row = (await conn.execute(sql.RETRY_JOB, {"id": job_id})).first()
                if row is not None:
                    job = JobRow.from_row(row)
                    await conn.execute(sql.NOTIFY, {"kind": job.kind})
                    _log.info("job_retried", job_id=str(job_id))
                    return job
    except errors.DatabaseError as exc:
        if is_pending_conflict(exc):
            await _raise_active_conflict(engine, job_id)
        raise
    current = await get(engine, job_id)
    if current is None:
        return None
    raise errors.UsageError(
        f"job {job_id} is {current.status}; only failed or cancelled jobs can be retried"
    )


async def _raise_active_conflict(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> None:
    job = await get(engine, job_id)
    other: JobRow | None = None
    if job is not None and job.brand_id is not None:
        with dberrors.mapped("retry"):
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        sql.SELECT_PENDING_FOR_BRAND, {"kind": job.kind, "brand_id": job.brand_id}
                    )
                ).first()
        other = JobRow.from_row(row) if row is not None else None
    brand = job.brand_id if job is not None else "?"
    which = f"job {other.id} ({other.status})" if other is not None else "another job"
    raise errors.UsageError(
        f"cannot retry job {job_id}: brand {brand} already has a pending "
        f"{job.kind if job else ''} job, {which}; wait for it or cancel it first"
    )


async def get(bind: Bind, job_id: uuid.UUID) -> JobRow | None:
    with dberrors.mapped("get"):
        async with binds.statement(bind) as conn:
            row = (await conn.execute(sql.SELECT_JOB, {"id": job_id})).first()
    return JobRow.from_row(row) if row is not None else None


async def list_jobs(
    bind: Bind,
    *,
    status: str | None = None,
    brand_id: uuid.UUID | None = None,
    limit: int = 100,
) -> list[JobRow]:
    """Jobs, newest first, optionally filtered by status and brand."""
    if status is not None and status not in {s.value for s in statuses.JobStatus}:
        known = ", ".join(s.value for s in statuses.JobStatus)
        raise errors.UsageError(f"unknown job status {status!r}; use one of {known}")
    with dberrors.mapped("list_jobs"):
        async with binds.statement(bind) as conn:
            rows = (
                await conn.execute(
                    sql.LIST_JOBS, {"status": status, "brand_id": brand_id, "limit": limit}
                )
            ).all()
    return [JobRow.from_row(row) for row in rows]


async def stats(bind: Bind) -> dict[str, Any]:
    """``{"counts": {status: n, ...}, "ready": n, "oldest_ready_age_seconds": s | None}``.

    Every status appears in ``counts``; ages use the database clock.
    """
    with dberrors.mapped("stats"):
        async with binds.statement(bind) as conn:
            row = (await conn.execute(sql.STATS)).one()
    counts = {status.value: 0 for status in statuses.JobStatus}
    counts.update({str(k): int(v) for k, v in (row.counts or {}).items()})
    age = row.oldest_ready_age_seconds
    return {
        "counts": counts,
        "ready": int(row.ready),
        "oldest_ready_age_seconds": None if age is None else max(0.0, float(age)),
    }


async def depth(bind: Bind) -> dict[str, Any]:
    """``{"pending", "ready", "running", "oldest_ready_age_seconds"}``: the cheap sample of
    the active part of the queue (partial indexes only), for the worker's gauges."""
    with dberrors.mapped("depth"):
        async with binds.statement(bind) as conn:
            row = (await conn.execute(sql.DEPTH)).one()
    age = row.oldest_ready_age_seconds
    return {
        "pending": int(row.pending),
        "ready": int(row.ready),
        "running": int(row.running),
        "oldest_ready_age_seconds": None if age is None else max(0.0, float(age)),
    }


@dataclasses.dataclass(frozen=True, slots=True)
class KindCounts:
    """Jobs of one kind that are ready to claim, and running."""

    ready: int
    running: int


async def ready_by_kind(bind: Bind) -> dict[str, KindCounts]:
    """Ready and running jobs per kind (kinds with neither are absent), for the gauges the
    autoscaler reads; "ready" is :data:`sql.READY`."""
    with dberrors.mapped("ready_by_kind"):
        async with binds.statement(bind) as conn:
            rows = (await conn.execute(sql.READY_BY_KIND)).all()
    return {str(r.kind): KindCounts(int(r.ready), int(r.running)) for r in rows}


async def prune(bind: Bind, *, older_than: dt.timedelta, batch_size: int = PRUNE_BATCH) -> int:
    """Delete finished jobs that finished more than ``older_than`` ago, in bounded batches.

    Each batch is its own short transaction. Returns how many rows were deleted.
    """
    total = 0
    while True:
        with dberrors.mapped("prune"):
            async with binds.statement(bind) as conn:
                result = await conn.execute(
                    sql.PRUNE,
                    {"older_than_seconds": older_than.total_seconds(), "batch": batch_size},
                )
        deleted = int(result.rowcount)
        total += deleted
        if deleted < batch_size:
            break
    if total:
        _log.info("finished_jobs_pruned", deleted=total)
    return total


async def has_ready_or_running(bind: Bind, *, kinds: Collection[str] | None = None) -> bool:
    """Is any job (of ``kinds``) ready to claim now, or running anywhere? (``--drain``)"""
    with dberrors.mapped("has_ready_or_running"):
        async with binds.statement(bind) as conn:
            busy = (
                await conn.execute(
                    sql.HAS_READY_OR_RUNNING,
                    {"kinds": None if kinds is None else list(kinds)},
                )
            ).scalar_one()
    return bool(busy)


async def waiting_on_backoff(bind: Bind, *, kinds: Collection[str] | None = None) -> Waiting:
    """How many pending jobs (of ``kinds``) wait on a backoff, and until when (``--drain``)."""
    with dberrors.mapped("waiting_on_backoff"):
        async with binds.statement(bind) as conn:
            row = (
                await conn.execute(
                    sql.WAITING_ON_BACKOFF, {"kinds": None if kinds is None else list(kinds)}
                )
            ).one()
    return Waiting(jobs=int(row.waiting), next_at=row.next_at)
