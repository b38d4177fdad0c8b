"""The end of an attempt: complete, fail (retry, snooze), cancel, release, give up, reap,
hand back.

Every one runs :func:`kairo_ingest.queue.sql._ending` (see there): the job moves on and
the attempt is recorded in ``job_attempts`` in the same statement. The lease holder's
operations are fenced by the lease token: when the row has moved on (reclaimed, finished)
the write changes nothing, is logged as ``lease_lost`` and counted in
``kairo_fenced_writes_rejected_total``, and the caller gets ``False`` / ``None`` / 0,
never an exception that could lead to an overwrite.

Refunds, caps and the job's next status are the shared rules of
:mod:`kairo_ingest.domain.endings` (the in-memory queue applies the same ones): a snooze,
a release, a give-up, a reap and a hand-back give the attempt back; releases, give-ups and
reaps are *interruptions*, each kind of refund against its own cap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, metrics
from kairo_ingest.db import dberrors
from kairo_ingest.domain import endings as ending_rules
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.domain import statuses
from kairo_ingest.queue import binds, jobs, sql

_log = logs.get("kairo_ingest.queue")

Outcome = statuses.AttemptOutcome
Lease = jobs.Lease

# The caps and the rules they belong to live in the domain (domain/endings.py), shared
# with the in-memory queue.
Caps = ending_rules.Caps
DEFAULT_CAPS = ending_rules.DEFAULT_CAPS


@dataclasses.dataclass(frozen=True, slots=True)
class _End:
    lease: Lease
    outcome: statuses.AttemptOutcome
    error: str | None = None
    error_kind: str | None = None
    delay_seconds: float = 0.0
    terminal: bool = False
    evidence: Mapping[str, Any] | None = None


@contextlib.asynccontextmanager
async def _own_transaction(bind: binds.Bind) -> AsyncIterator[sa_async.AsyncConnection]:
    """A connection on which one statement is its own transaction: an engine's pooled
    connection in AUTOCOMMIT mode, a caller's AUTOCOMMIT connection as it is, a caller's
    idle connection inside a transaction begun and committed here, or the caller's open
    transaction (the caller commits)."""
    if isinstance(bind, sa_async.AsyncConnection):
        options = bind.sync_connection.get_execution_options() if bind.sync_connection else {}
        autocommit = options.get("isolation_level") == "AUTOCOMMIT"
        if autocommit or bind.in_transaction():
            yield bind
            return
        async with bind.begin():
            yield bind
        return
    async with binds.statement(bind) as conn:
        yield conn


async def _run(
    bind: binds.Bind, statement: sa.Executable, values: Mapping[str, Any], operation: str
) -> Sequence[sa.Row[Any]]:
    """Run an ending statement. If a follow-up job of the brand was enqueued while the job
    ran (its insert committed between our snapshot and our index check), the pending index
    refuses the row: run it once more, and this time the statement sees the follow-up and
    supersedes the job instead. (Inside a caller's open transaction the first error aborted
    it, and the second run fails as well.)"""
    for last in (False, True):
        try:
            with dberrors.mapped(operation):
                async with _own_transaction(bind) as conn:
                    return (await conn.execute(statement, values)).all()
        except errors.DatabaseConstraintError as exc:
            if last or not jobs.is_pending_conflict(exc):
                raise
    raise AssertionError("unreachable")


async def _end(
    bind: binds.Bind, ends: Sequence[_End], operation: str, caps: Caps
) -> dict[uuid.UUID, str]:
    """End the given attempts in one statement; the new status of each job that moved on."""
    if not ends:
        return {}
    values: dict[str, Any] = {
        "ids": [end.lease.job_id for end in ends],
        "tokens": [end.lease.token for end in ends],
        "outcomes": [end.outcome.value for end in ends],
        "errors": [end.error for end in ends],
        "error_kinds": [end.error_kind for end in ends],
        "delays": [end.delay_seconds for end in ends],
        "terminal": [end.terminal for end in ends],
        "evidence": [binds.as_json(end.evidence) for end in ends],
        **caps.values(),
    }
    rows = await _run(bind, sql.END, values, operation)
    moved = {row.id: str(row.status) for row in rows}
    for end in ends:
        if end.lease.job_id not in moved:
            jobs.note_lease_lost(operation, end.lease)
    return moved


def _count(leases: Sequence[Lease], outcome: str) -> None:
    counts: dict[str, int] = {}
    for lease in leases:
        counts[lease.kind] = counts.get(lease.kind, 0) + 1
    for kind, n in counts.items():
        metrics.JOBS_FINISHED.labels(kind=kind, outcome=outcome).inc(n)


async def complete(
    bind: binds.Bind,
    lease: Lease,
    *,
    evidence_status: Mapping[str, Any] | None = None,
) -> bool:
    """Mark the job succeeded (fenced). False when the lease was lost."""
    return lease.job_id in await complete_many(bind, [(lease, evidence_status)])


async def complete_many(
    bind: binds.Bind,
    items: Sequence[tuple[Lease, Mapping[str, Any] | None]],
) -> set[uuid.UUID]:
    """Mark a batch of jobs succeeded in one statement, fenced per lease.

    Each item is ``(lease, evidence_status or None to keep the stored one)``. Returns
    the ids completed; each other lease is reported as lost.
    """
    ends = [_End(lease, Outcome.SUCCEEDED, evidence=evidence) for lease, evidence in items]
    done = set(await _end(bind, ends, "complete", DEFAULT_CAPS))
    _count([lease for lease, _ in items if lease.job_id in done], "succeeded")
    return done


_OUTCOME = {
    retry_rules.Action.RETRY: "retried",
    retry_rules.Action.SNOOZE: "snoozed",
    retry_rules.Action.FAIL: "failed",
}


async def fail(
    bind: binds.Bind,
    lease: Lease,
    error: BaseException,
    *,
    evidence_status: Mapping[str, Any] | None = None,
    base_seconds: float,
    cap_seconds: float,
    snooze_seconds: float,
    rng: random.Random | None = None,
    caps: Caps = DEFAULT_CAPS,
) -> retry_rules.Action | None:
    """Record a failed attempt (fenced): retry after a backoff, snooze, or fail for good.

    The error is classified (:func:`errors.classify`) and the retry rules decide (a
    snooze's cap, and an operator's cancel, are applied by the statement). Returns the
    action taken, or None when the lease was lost and nothing was written.
    """
    failure = ending_rules.failure(
        error,
        attempts=lease.attempts,
        max_attempts=lease.max_attempts,
        base_seconds=base_seconds,
        cap_seconds=cap_seconds,
        snooze_seconds=snooze_seconds,
        rng=rng,
    )
    end = _End(
        lease,
        failure.outcome,
        error=failure.error,
        error_kind=failure.error_kind,
        delay_seconds=failure.delay_seconds,
        terminal=failure.terminal,
        evidence=evidence_status,
    )
    moved = await _end(bind, [end], "fail", caps)
    if lease.job_id not in moved:
        return None
    metrics.JOBS_FINISHED.labels(kind=lease.kind, outcome=_OUTCOME[failure.action]).inc()
    _log.info(
        "job_attempt_failed",
        job_id=str(lease.job_id),
        attempt=lease.attempts,
        max_attempts=lease.max_attempts,
        action=failure.action.value,
        status=moved[lease.job_id],
        delay_seconds=round(failure.delay_seconds, 3),
        error_kind=failure.error_kind,
        error=failure.error,
    )
    return failure.action


async def stop_cancelled(bind: binds.Bind, leases: Collection[Lease]) -> int:
    """The lease holder has stopped jobs an operator cancelled: end them ``cancelled``
    (fenced). Returns how many changed."""
    ends = [
        _End(
            lease,
            Outcome.CANCELLED,
            error=f"cancelled by an operator; {lease.owner} stopped attempt {lease.attempt_number}",
            error_kind=ending_rules.ERROR_KIND[Outcome.CANCELLED].value,
        )
        for lease in leases
    ]
    moved = await _end(bind, ends, "stop_cancelled", DEFAULT_CAPS)
    _count([lease for lease in leases if lease.job_id in moved], "cancelled")
    return len(moved)


async def release(bind: binds.Bind, leases: Collection[Lease], *, caps: Caps = DEFAULT_CAPS) -> int:
    """Shutdown: return the leases' jobs to pending, ready now, the attempt refunded and
    counted as an interruption (fenced). Returns how many were released; the others had
    already been lost."""
    ends = [
        _End(
            lease,
            Outcome.RELEASED,
            error=f"released at shutdown by {lease.owner} during attempt {lease.attempt_number}",
            error_kind=ending_rules.ERROR_KIND[Outcome.RELEASED].value,
        )
        for lease in leases
    ]
    moved = await _end(bind, ends, "release", caps)
    _count([lease for lease in leases if lease.job_id in moved], "released")
    return len(moved)


async def give_up(bind: binds.Bind, leases: Collection[Lease], *, caps: Caps = DEFAULT_CAPS) -> int:
    """Hand back jobs whose leases this worker gave up on (its heartbeats could not extend
    them in time), at once and fenced: ready now, the attempt refunded and counted as an
    interruption. Returns how many rows changed; the others had already moved on."""
    ends = [
        _End(
            lease,
            Outcome.GIVEN_UP,
            error=(
                f"lease of {lease.owner} given up during attempt {lease.attempt_number}: "
                "heartbeats could not extend it in time"
            ),
            error_kind=ending_rules.ERROR_KIND[Outcome.GIVEN_UP].value,
        )
        for lease in leases
    ]
    moved = await _end(bind, ends, "give_up", caps)
    for job_id, status in moved.items():
        _log.warning("lease_given_up", job_id=str(job_id), status=status)
    return len(moved)


def reap_values(
    *, base_seconds: float, cap_seconds: float, limit: int, caps: Caps
) -> dict[str, Any]:
    """:data:`sql.REAP`'s parameters: the reap backoff's floor, the error kind and the caps
    are the shared rules' (:func:`ending_rules.reap_delay_seconds`, the statement computes
    the same formula in the database)."""
    return {
        "limit": limit,
        "base_seconds": base_seconds,
        "cap_seconds": cap_seconds,
        "floor": retry_rules.JOB_FLOOR,
        "error_kind": ending_rules.ERROR_KIND[Outcome.REAPED].value,
        **caps.values(),
    }


def hand_back_values(*, owner: str, held: Collection[uuid.UUID]) -> dict[str, Any]:
    """:data:`sql.HAND_BACK`'s parameters (a hand-back counts against no cap)."""
    return {
        "owner": owner,
        "held": list(held),
        "error_kind": ending_rules.ERROR_KIND[Outcome.HANDED_BACK].value,
        **DEFAULT_CAPS.values(),
    }


async def reap(
    bind: binds.Bind,
    *,
    base_seconds: float,
    cap_seconds: float,
    limit: int = 1000,
    caps: Caps = DEFAULT_CAPS,
) -> tuple[int, int]:
    """Reclaim up to ``limit`` expired leases in one statement: ``(requeued, failed)``.

    Requeued jobs wait a backoff (the job formula, with its floor); the attempt is refunded
    and counted as an interruption, and a job at its cap fails with the ``lease_lost``
    kind. Safe to run from every worker at once.
    """
    values = reap_values(base_seconds=base_seconds, cap_seconds=cap_seconds, limit=limit, caps=caps)
    rows = await _run(bind, sql.REAP, values, "reap")
    failed = sum(1 for row in rows if row.status == statuses.JobStatus.FAILED)
    requeued = len(rows) - failed  # back to pending (or superseded by its follow-up)
    if requeued:
        metrics.REAPED.labels(outcome="requeued").inc(requeued)
    if failed:
        metrics.REAPED.labels(outcome="failed").inc(failed)
    if rows:
        _log.warning("expired_leases_reaped", requeued=requeued, failed=failed)
    return requeued, failed


async def hand_back(bind: binds.Bind, *, owner: str, held: Collection[uuid.UUID]) -> int:
    """Hand back every running job ``owner`` holds under a token not in ``held`` (a claim
    whose answer was lost): ready now, the attempt refunded, nothing counted against a cap.
    The caller makes sure no claim of ``owner`` is in flight meanwhile. Returns how many."""
    rows = await _run(bind, sql.HAND_BACK, hand_back_values(owner=owner, held=held), "hand_back")
    if rows:
        metrics.HANDED_BACK.inc(len(rows))
        _log.warning("orphaned_claims_handed_back", owner=owner, jobs=len(rows))
    return len(rows)
