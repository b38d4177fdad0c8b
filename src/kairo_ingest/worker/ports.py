"""The queue port: exactly what the worker asks of the job queue, as a protocol.

The worker claims jobs, heartbeats their leases, ends their attempts (complete, fail,
release at shutdown, give up, stop as an operator asked), hands back orphaned claims,
reaps expired leases, promotes deferred jobs, asks whether anything is left to drain and
marks itself stopped. :class:`JobQueue` names those calls and their semantics; two
adapters implement it:

* :class:`kairo_ingest.worker.pg_queue.PostgresJobQueue`, the product's: a thin class over
  :mod:`kairo_ingest.queue.jobs`, :mod:`~kairo_ingest.queue.endings` and
  :mod:`~kairo_ingest.queue.upkeep` (the SQL stays in :mod:`kairo_ingest.queue.sql`);
* ``tests/support/memory_queue.py``, an in-memory queue on an injectable clock, for tests
  that need no database.

One conformance suite (``tests/integration/ports/``) holds both to the same semantics:

* a claim takes ready jobs (pending, not deferred, ``available_at`` reached) by priority
  (lower first), then oldest first; it spends an attempt, counts a claim and gives the
  job a fresh lease token and an expiry ``lease_seconds`` ahead;
* every lease holder's write is fenced: an ending or a beat under a token that is no
  longer the job's changes nothing (the lease was lost, the caller gets ``False`` /
  ``None`` / 0 / the id reported ``lost``);
* a failed attempt retries after a backoff (the job is deferred until the promoter makes it
  ready), or fails for good at ``max_attempts``; a snooze, a release, a give-up, a reap and
  a hand-back refund the attempt; releases, give-ups and reaps are interruptions, capped.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs

Lease = queue_jobs.Lease


class JobQueue(Protocol):
    """What the worker needs from the queue (see the module docstring)."""

    async def claim(
        self, *, owner: str, limit: int, lease_seconds: float, kinds: Collection[str] | None
    ) -> list[Lease]:
        """Claim up to ``limit`` ready jobs (of ``kinds``, when given)."""
        ...

    async def beat(
        self,
        leases: Collection[Lease],
        lease_seconds: float,
        *,
        registration: queue_jobs.Registration | None = None,
    ) -> queue_jobs.Beat:
        """Extend the leases still held; report extended, busy, lost and cancelling ids."""
        ...

    async def complete_many(
        self, items: Sequence[tuple[Lease, Mapping[str, Any] | None]]
    ) -> set[uuid.UUID]:
        """End the attempts ``succeeded`` (fenced); the ids that were completed."""
        ...

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
        """Record a failed attempt (fenced): retry, snooze or fail; None when lost."""
        ...

    async def release(
        self, leases: Collection[Lease], *, caps: endings.Caps = endings.DEFAULT_CAPS
    ) -> int:
        """Shutdown: back to pending now, refunded, an interruption (fenced)."""
        ...

    async def give_up(
        self, leases: Collection[Lease], *, caps: endings.Caps = endings.DEFAULT_CAPS
    ) -> int:
        """Leases the heartbeats could not keep: back now, refunded, an interruption."""
        ...

    async def stop_cancelled(self, leases: Collection[Lease]) -> int:
        """End attempts an operator cancelled ``cancelled`` (fenced)."""
        ...

    async def hand_back(self, *, owner: str, held: Collection[uuid.UUID]) -> int:
        """Hand back every running job ``owner`` holds under a token not in ``held``."""
        ...

    async def reap(
        self,
        *,
        base_seconds: float,
        cap_seconds: float,
        caps: endings.Caps = endings.DEFAULT_CAPS,
    ) -> tuple[int, int]:
        """Reclaim expired leases of any owner: ``(requeued, failed)``."""
        ...

    async def promote(self) -> int:
        """Make deferred jobs whose backoff or snooze is over ready; how many."""
        ...

    async def has_ready_or_running(self, *, kinds: Collection[str] | None = None) -> bool:
        """Drain mode: is any job ready now, or running anywhere?"""
        ...

    async def waiting_on_backoff(
        self, *, kinds: Collection[str] | None = None
    ) -> queue_jobs.Waiting:
        """Drain mode's report: pending jobs that wait on a backoff, and the first's time."""
        ...

    async def stop_worker(self, owner: str) -> None:
        """Mark ``owner`` stopped in the workers registry."""
        ...
