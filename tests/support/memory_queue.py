"""An in-memory job queue: the queue port (:class:`kairo_ingest.worker.ports.JobQueue`)
without a database, on an injectable clock. Test tooling, not the product.

It keeps the semantics the conformance suite (``tests/integration/ports/``) holds the
PostgreSQL adapter to: leases with fencing tokens (an ending or a beat under a stale token
changes nothing), attempts and claims counted, refunds (snooze, release, give-up, reap,
hand-back), the interruption and snooze caps, ``max_attempts``, claim order (priority, then
oldest ``available_at``, then enqueue order), and deferred jobs that wait out their backoff
on the clock until :meth:`MemoryJobQueue.promote` makes them ready. How an attempt's end
moves its job on (refunds, caps, the next status, backoffs) is not restated here: it is
:mod:`kairo_ingest.domain.endings`, the rules the PostgreSQL adapter's statement applies.

Not modelled: the attempt history (``job_attempts``), the workers registry beyond a set of
stopped owners, NOTIFY, and the merge of a superseded job's request into its follow-up (the
superseded job is cancelled, the follow-up left as it is).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kairo_ingest.domain import endings as ending_rules
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.domain import statuses
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs

Lease = queue_jobs.Lease
Outcome = statuses.AttemptOutcome

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class ManualClock:
    """Wall and monotonic time that move only when told (:meth:`advance`)."""

    def __init__(self, start: dt.datetime = EPOCH) -> None:
        self._now = start
        self._mono = 1000.0

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds


@dataclasses.dataclass
class MemoryJob:
    id: uuid.UUID
    kind: str
    brand_id: uuid.UUID | None
    params: dict[str, Any]
    priority: int
    max_attempts: int
    available_at: dt.datetime
    seq: int
    status: str = statuses.JobStatus.PENDING.value
    deferred: bool = False
    attempts: int = 0
    claims: int = 0
    interruptions: int = 0
    snoozes: int = 0
    lease_owner: str | None = None
    lease_token: uuid.UUID | None = None
    lease_expires_at: dt.datetime | None = None
    cancel_requested_at: dt.datetime | None = None
    evidence_status: dict[str, Any] | None = None
    last_error: str | None = None
    last_error_kind: str | None = None
    finished_at: dt.datetime | None = None
    outcomes: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _End:
    lease: Lease
    outcome: Outcome
    error: str | None = None
    error_kind: str | None = None
    delay_seconds: float = 0.0
    terminal: bool = False
    evidence: Mapping[str, Any] | None = None


def _ended(lease: Lease, outcome: Outcome, error: str, delay_seconds: float = 0.0) -> _End:
    """An ending that is not the handler's own, with the error kind the rules give it."""
    kind = ending_rules.ERROR_KIND[outcome].value
    return _End(lease, outcome, error, kind, delay_seconds)


class MemoryJobQueue:
    """The queue port in memory (see the module docstring)."""

    def __init__(self, clock: ManualClock | None = None, *, rng: random.Random | None = None):
        self.clock = clock or ManualClock()
        self._rng = rng or random.Random(0)
        self.jobs: dict[uuid.UUID, MemoryJob] = {}
        self.stopped_owners: set[str] = set()
        self.rejected: list[tuple[str, uuid.UUID]] = []  # (operation, job id) of fenced writes
        self._seq = 0

    # ------------------------------------------------------------- outside the port

    async def enqueue(
        self,
        *,
        kind: str,
        brand_id: uuid.UUID | None = None,
        params: Mapping[str, Any] | None = None,
        priority: int = 0,
        max_attempts: int = queue_jobs.DEFAULT_MAX_ATTEMPTS,
    ) -> uuid.UUID:
        self._seq += 1
        job = MemoryJob(
            id=uuid.uuid4(),
            kind=kind,
            brand_id=brand_id,
            params=dict(params or {}),
            priority=priority,
            max_attempts=max_attempts,
            available_at=self.clock.now(),
            seq=self._seq,
        )
        self.jobs[job.id] = job
        return job.id

    def request_cancel(self, job_id: uuid.UUID) -> None:
        """An operator's cancel: a pending job ends at once, a running one is marked."""
        job = self.jobs[job_id]
        if job.status == statuses.JobStatus.PENDING:
            job.status = statuses.JobStatus.CANCELLED.value
            job.finished_at = self.clock.now()
        elif job.status == statuses.JobStatus.RUNNING:
            job.cancel_requested_at = self.clock.now()

    # ------------------------------------------------------------- the port

    async def claim(
        self, *, owner: str, limit: int, lease_seconds: float, kinds: Collection[str] | None
    ) -> list[Lease]:
        now = self.clock.now()
        running_brands = {
            (j.kind, j.brand_id)
            for j in self.jobs.values()
            if j.status == statuses.JobStatus.RUNNING and j.brand_id is not None
        }
        ready = sorted(
            (
                j
                for j in self.jobs.values()
                if j.status == statuses.JobStatus.PENDING
                and not j.deferred
                and j.available_at <= now
                and (kinds is None or j.kind in kinds)
                and (j.kind, j.brand_id) not in running_brands
            ),
            key=lambda j: (j.priority, j.available_at, j.seq),
        )
        leases = []
        for job in ready[: max(0, limit)]:
            job.status = statuses.JobStatus.RUNNING.value
            job.attempts += 1
            job.claims += 1
            job.lease_owner = owner
            job.lease_token = uuid.uuid4()
            job.lease_expires_at = now + dt.timedelta(seconds=lease_seconds)
            leases.append(
                Lease(
                    job.id,
                    job.lease_token,
                    owner,
                    job.kind,
                    job.brand_id,
                    job.attempts,
                    job.max_attempts,
                    dict(job.params),
                    job.claims,
                )
            )
        return leases

    async def beat(
        self,
        leases: Collection[Lease],
        lease_seconds: float,
        *,
        registration: queue_jobs.Registration | None = None,
    ) -> queue_jobs.Beat:
        if registration is not None:
            self.stopped_owners.discard(registration.owner)
        extended: set[uuid.UUID] = set()
        lost: set[uuid.UUID] = set()
        cancelling: set[uuid.UUID] = set()
        for lease in leases:
            job = self._held(lease)
            if job is None:
                lost.add(lease.job_id)
                continue
            job.lease_expires_at = self.clock.now() + dt.timedelta(seconds=lease_seconds)
            extended.add(lease.job_id)
            if job.cancel_requested_at is not None:
                cancelling.add(lease.job_id)
        return queue_jobs.Beat(
            frozenset(extended), frozenset(), frozenset(lost), frozenset(cancelling)
        )

    async def complete_many(
        self, items: Sequence[tuple[Lease, Mapping[str, Any] | None]]
    ) -> set[uuid.UUID]:
        ends = [_End(lease, Outcome.SUCCEEDED, evidence=evidence) for lease, evidence in items]
        return set(self._end(ends, "complete", endings.DEFAULT_CAPS))

    async def fail(
        self,
        lease: Lease,
        error: BaseException,
        *,
        evidence_status: Mapping[str, Any] | None = None,
        base_seconds: float,
        cap_seconds: float,
        snooze_seconds: float,
        rng: random.Random | None = None,
        caps: endings.Caps = endings.DEFAULT_CAPS,
    ) -> retry_rules.Action | None:
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
        if lease.job_id not in self._end([end], "fail", caps):
            return None
        return failure.action

    async def release(
        self, leases: Collection[Lease], *, caps: endings.Caps = endings.DEFAULT_CAPS
    ) -> int:
        ends = [_ended(lease, Outcome.RELEASED, "released") for lease in leases]
        return len(self._end(ends, "release", caps))

    async def give_up(
        self, leases: Collection[Lease], *, caps: endings.Caps = endings.DEFAULT_CAPS
    ) -> int:
        ends = [_ended(lease, Outcome.GIVEN_UP, "given up") for lease in leases]
        return len(self._end(ends, "give_up", caps))

    async def stop_cancelled(self, leases: Collection[Lease]) -> int:
        ends = [_ended(lease, Outcome.CANCELLED, "cancelled") for lease in leases]
        return len(self._end(ends, "stop_cancelled", endings.DEFAULT_CAPS))

    async def hand_back(self, *, owner: str, held: Collection[uuid.UUID]) -> int:
        ends = [
            _ended(self._lease_of(job), Outcome.HANDED_BACK, "handed back")
            for job in list(self.jobs.values())
            if job.status == statuses.JobStatus.RUNNING
            and job.lease_owner == owner
            and job.lease_token not in held
        ]
        return len(self._end(ends, "hand_back", endings.DEFAULT_CAPS))

    async def reap(
        self,
        *,
        base_seconds: float,
        cap_seconds: float,
        caps: endings.Caps = endings.DEFAULT_CAPS,
    ) -> tuple[int, int]:
        now = self.clock.now()
        expired = [
            job
            for job in self.jobs.values()
            if job.status == statuses.JobStatus.RUNNING
            and job.lease_expires_at is not None
            and job.lease_expires_at < now
        ]
        ends = [
            _ended(
                self._lease_of(job),
                Outcome.REAPED,
                "expired",
                ending_rules.reap_delay_seconds(
                    job.interruptions,
                    base_seconds=base_seconds,
                    cap_seconds=cap_seconds,
                    rng=self._rng,
                ),
            )
            for job in expired
        ]
        moved = self._end(ends, "reap", caps)
        failed = sum(1 for status in moved.values() if status == statuses.JobStatus.FAILED)
        return len(moved) - failed, failed

    async def promote(self) -> int:
        now = self.clock.now()
        due = [
            job
            for job in self.jobs.values()
            if job.status == statuses.JobStatus.PENDING and job.deferred and job.available_at <= now
        ]
        for job in due:
            job.deferred = False
        return len(due)

    async def has_ready_or_running(self, *, kinds: Collection[str] | None = None) -> bool:
        now = self.clock.now()
        return any(
            (kinds is None or job.kind in kinds)
            and (
                (job.status == statuses.JobStatus.PENDING and job.available_at <= now)
                or job.status == statuses.JobStatus.RUNNING
            )
            for job in self.jobs.values()
        )

    async def waiting_on_backoff(
        self, *, kinds: Collection[str] | None = None
    ) -> queue_jobs.Waiting:
        now = self.clock.now()
        waiting = [
            job.available_at
            for job in self.jobs.values()
            if job.status == statuses.JobStatus.PENDING
            and job.available_at > now
            and (kinds is None or job.kind in kinds)
        ]
        return queue_jobs.Waiting(jobs=len(waiting), next_at=min(waiting, default=None))

    async def stop_worker(self, owner: str) -> None:
        self.stopped_owners.add(owner)

    # ------------------------------------------------------------- the ending

    def _held(self, lease: Lease) -> MemoryJob | None:
        """The job, when it is still running under the lease's token (the fence)."""
        job = self.jobs.get(lease.job_id)
        if job is None or job.status != statuses.JobStatus.RUNNING:
            return None
        if job.lease_token != lease.token:
            return None
        return job

    def _lease_of(self, job: MemoryJob) -> Lease:
        assert job.lease_token is not None
        assert job.lease_owner is not None
        return Lease(
            job.id,
            job.lease_token,
            job.lease_owner,
            job.kind,
            job.brand_id,
            job.attempts,
            job.max_attempts,
            dict(job.params),
            job.claims,
        )

    def _end(
        self, ends: Sequence[_End], operation: str, caps: endings.Caps
    ) -> dict[uuid.UUID, str]:
        """End each attempt still held under its token; the new status of each that moved."""
        moved: dict[uuid.UUID, str] = {}
        for end in ends:
            job = self._held(end.lease)
            if job is None:
                self.rejected.append((operation, end.lease.job_id))
                continue
            moved[job.id] = self._next(job, end, caps)
        return moved

    def _next(self, job: MemoryJob, end: _End, caps: endings.Caps) -> str:
        """The shared rules (:mod:`kairo_ingest.domain.endings`) applied to the job."""
        now = self.clock.now()
        cancel_requested = job.cancel_requested_at is not None
        superseded = any(
            other.id != job.id
            and other.kind == job.kind
            and other.brand_id is not None
            and other.brand_id == job.brand_id
            and other.status == statuses.JobStatus.PENDING
            for other in self.jobs.values()
        )
        status = ending_rules.next_status(
            end.outcome,
            terminal=end.terminal,
            cancel_requested=cancel_requested,
            interruptions=job.interruptions,
            snoozes=job.snoozes,
            superseded=superseded,
            caps=caps,
        )
        if not ending_rules.keeps_last_error(end.outcome, status):
            job.last_error = end.error
            job.last_error_kind = ending_rules.stored_error_kind(
                end.outcome, cancel_requested=cancel_requested, error_kind=end.error_kind
            )
        if status is statuses.JobStatus.PENDING:
            job.available_at = now + dt.timedelta(seconds=end.delay_seconds)
        else:
            job.finished_at = now
        job.deferred = ending_rules.deferred(status, end.delay_seconds)
        job.status = status.value
        counts = ending_rules.counts_after(
            end.outcome,
            ending_rules.Counts(job.attempts, job.interruptions, job.snoozes),
        )
        job.attempts, job.interruptions, job.snoozes = (
            counts.attempts,
            counts.interruptions,
            counts.snoozes,
        )
        job.lease_token = None
        job.lease_expires_at = None
        if end.evidence is not None:
            job.evidence_status = dict(end.evidence)
        job.outcomes.append(end.outcome.value)
        return job.status
