"""The queue port's PostgreSQL adapter: each call is the existing queue function on a
:data:`~kairo_ingest.queue.binds.Bind` (an engine, or a connection the caller holds).

No SQL here: it stays in :mod:`kairo_ingest.queue.sql`, and the functions this class
calls (:mod:`kairo_ingest.queue.jobs`, :mod:`~kairo_ingest.queue.endings`,
:mod:`~kairo_ingest.queue.upkeep`) keep their own error mapping, metrics and logs.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import binds, endings, upkeep
from kairo_ingest.queue import jobs as queue_jobs

Lease = queue_jobs.Lease


class PostgresJobQueue:
    """:class:`kairo_ingest.worker.ports.JobQueue` over the ``jobs`` table."""

    def __init__(
        self, bind: binds.Bind, *, beat_statement_timeout_seconds: float | None = None
    ) -> None:
        self.bind = bind
        self._beat_timeout = beat_statement_timeout_seconds

    async def claim(
        self, *, owner: str, limit: int, lease_seconds: float, kinds: Collection[str] | None
    ) -> list[Lease]:
        return await queue_jobs.claim(
            self.bind, owner=owner, limit=limit, lease_seconds=lease_seconds, kinds=kinds
        )

    async def beat(
        self,
        leases: Collection[Lease],
        lease_seconds: float,
        *,
        registration: queue_jobs.Registration | None = None,
    ) -> queue_jobs.Beat:
        return await queue_jobs.beat(
            self.bind,
            leases,
            lease_seconds,
            statement_timeout_seconds=self._beat_timeout,
            registration=registration,
        )

    async def complete_many(
        self, items: Sequence[tuple[Lease, Mapping[str, Any] | None]]
    ) -> set[uuid.UUID]:
        return await endings.complete_many(self.bind, items)

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
        return await endings.fail(
            self.bind,
            lease,
            error,
            evidence_status=evidence_status,
            base_seconds=base_seconds,
            cap_seconds=cap_seconds,
            snooze_seconds=snooze_seconds,
            rng=rng,
            caps=caps,
        )

    async def release(
        self, leases: Collection[Lease], *, caps: endings.Caps = endings.DEFAULT_CAPS
    ) -> int:
        return await endings.release(self.bind, leases, caps=caps)

    async def give_up(
        self, leases: Collection[Lease], *, caps: endings.Caps = endings.DEFAULT_CAPS
    ) -> int:
        return await endings.give_up(self.bind, leases, caps=caps)

    async def stop_cancelled(self, leases: Collection[Lease]) -> int:
        return await endings.stop_cancelled(self.bind, leases)

    async def hand_back(self, *, owner: str, held: Collection[uuid.UUID]) -> int:
        return await endings.hand_back(self.bind, owner=owner, held=held)

    async def reap(
        self,
        *,
        base_seconds: float,
        cap_seconds: float,
        caps: endings.Caps = endings.DEFAULT_CAPS,
    ) -> tuple[int, int]:
        return await endings.reap(
            self.bind, base_seconds=base_seconds, cap_seconds=cap_seconds, caps=caps
        )

    async def promote(self) -> int:
        return await upkeep.promote(self.bind)

    async def has_ready_or_running(self, *, kinds: Collection[str] | None = None) -> bool:
        return await queue_jobs.has_ready_or_running(self.bind, kinds=kinds)

    async def waiting_on_backoff(
        self, *, kinds: Collection[str] | None = None
    ) -> queue_jobs.Waiting:
        return await queue_jobs.waiting_on_backoff(self.bind, kinds=kinds)

    async def stop_worker(self, owner: str) -> None:
        await upkeep.stop_worker(self.bind, owner)
