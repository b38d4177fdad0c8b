"""The run-store port's PostgreSQL adapter (:class:`kairo_ingest.pipeline.ports.RunStore`).

Each call is one unit of :mod:`kairo_ingest.pipeline.tx`: a write is a fenced transaction
(:func:`tx.write`), a read an autocommit connection (:func:`tx.read`), both retried whole
with the job's policy. The statements stay in :mod:`kairo_ingest.db.runs` and
:mod:`kairo_ingest.pipeline.store`; this class only adds the values that are SQL
expressions (``now()``, ``coalesce``).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import runs, sources, tables
from kairo_ingest.domain import charges, statuses
from kairo_ingest.pipeline import store, tx
from kairo_ingest.queue import jobs as queue_jobs

Lease = queue_jobs.Lease
T = TypeVar("T")


async def _create_intent(
    conn: sa_async.AsyncConnection,
    *,
    lease: Lease,
    source: sources.Source,
    actor_id: str,
    run_input: dict[str, Any],
    cap: int,
    attempt: int,
    account: str,
) -> runs.Run:
    """A new intent, or the one a retried transaction already committed (its COMMIT's
    answer lost): the same attempt, still STARTING, never sent to Apify (Apify hears of an
    intent only after this transaction returned), so it is safe to take over."""
    latest = await runs.latest_for(conn, job_id=lease.job_id, source_id=source.id)
    if (
        latest is not None
        and latest.attempt == attempt
        and latest.status == statuses.RunStatus.STARTING
        and latest.apify_run_id is None
    ):
        return latest
    return await runs.create_intent(
        conn,
        job_id=lease.job_id,
        source_id=source.id,
        brand_id=source.brand_id,
        actor_id=actor_id,
        run_input=run_input,
        item_cap=cap,
        attempt=attempt,
        account=account,
        job_attempt=lease.attempt_number,
    )


class PostgresRunStore:
    """The run store on an engine, every unit retried with ``policy``."""

    def __init__(self, engine: sa_async.AsyncEngine, policy: tx.Policy) -> None:
        self.engine = engine
        self.policy = policy

    async def _write(
        self, lease: Lease, fn: Callable[..., Awaitable[T]], operation: str, /, **kwargs: Any
    ) -> T:
        """``fn(conn, **kwargs)`` in one fenced, retried transaction."""
        return await tx.write(
            self.engine,
            lease,
            functools.partial(fn, **kwargs),
            policy=self.policy,
            operation=operation,
        )

    async def _read(self, fn: Callable[..., Awaitable[T]], operation: str, /, **kwargs: Any) -> T:
        """``fn(conn, **kwargs)`` on one retried autocommit connection."""
        return await tx.read(
            self.engine, functools.partial(fn, **kwargs), policy=self.policy, operation=operation
        )

    async def _update(self, lease: Lease, run_id: uuid.UUID, **values: Any) -> runs.Run:
        return await self._write(lease, runs.update, "update_run", run_id=run_id, **values)

    async def latest_for(self, *, job_id: uuid.UUID, source_id: uuid.UUID) -> runs.Run | None:
        return await self._read(runs.latest_for, "latest_run", job_id=job_id, source_id=source_id)

    async def create_intent(
        self,
        lease: Lease,
        *,
        source: sources.Source,
        actor_id: str,
        run_input: dict[str, Any],
        cap: int,
        attempt: int,
        account: str,
    ) -> runs.Run:
        return await self._write(
            lease,
            _create_intent,
            "create_intent",
            lease=lease,
            source=source,
            actor_id=actor_id,
            run_input=run_input,
            cap=cap,
            attempt=attempt,
            account=account,
        )

    async def mark_sent(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        return await self._write(lease, runs.mark_sent, "mark_run_sent", run_id=run_id)

    async def bind_started(
        self,
        lease: Lease,
        run_id: uuid.UUID,
        info: apify_models.RunInfo,
        *,
        end: runs.End | None,
    ) -> tuple[runs.Run, bool]:
        async def unit(conn: sa_async.AsyncConnection) -> tuple[runs.Run, bool]:
            values: dict[str, Any] = {
                "apify_run_id": info.id,
                "dataset_id": info.default_dataset_id,
                "started_at": info.started_at or sa.func.now(),
            }
            if end is None:
                values["status"] = info.status
            bound = await runs.update(conn, run_id, **values)
            if end is None:
                return bound, False
            return await runs.record_end(conn, run_id, end)

        return await self._write(lease, unit, "record_run_started")

    async def record_end(
        self, lease: Lease, run_id: uuid.UUID, end: runs.End
    ) -> tuple[runs.Run, bool]:
        return await self._write(lease, runs.record_end, "record_run_end", run_id=run_id, end=end)

    async def mark_start_failed(
        self, lease: Lease, run_id: uuid.UUID, *, error_kind: str, error_summary: str
    ) -> runs.Run:
        return await self._update(
            lease,
            run_id,
            status=statuses.RunStatus.START_FAILED,
            finished_at=sa.func.now(),
            error_kind=error_kind,
            error_summary=error_summary,
        )

    async def release(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        return await self._update(
            lease, run_id, released_at=sa.func.now(), ledger_check_at=sa.func.now()
        )

    async def take_back(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        return await self._update(lease, run_id, released_at=None, ledger_check_at=None)

    async def mark_timed_out_unended(
        self, lease: Lease, run_id: uuid.UUID, *, status: str
    ) -> runs.Run:
        return await self._update(
            lease,
            run_id,
            status=status,
            partial_reason=charges.PartialReason.TIMED_OUT.value,
            abort_requested_at=sa.func.now(),
            released_at=sa.func.now(),
            ledger_check_at=sa.func.now(),
        )

    async def set_dataset(self, lease: Lease, run_id: uuid.UUID, dataset_id: str) -> runs.Run:
        return await self._update(lease, run_id, dataset_id=dataset_id)

    async def owned_apify_run_ids(self, *, actor_id: str, since: dt.datetime) -> set[str]:
        return await self._read(
            runs.owned_apify_run_ids, "owned_apify_runs", actor_id=actor_id, since=since
        )

    async def owned_and_now(
        self, *, actor_id: str, since: dt.datetime
    ) -> tuple[set[str], dt.datetime]:
        async def unit(conn: sa_async.AsyncConnection) -> tuple[set[str], dt.datetime]:
            owned = await runs.owned_apify_run_ids(conn, actor_id=actor_id, since=since)
            return owned, await runs.db_now(conn)

        return await self._read(unit, "owned_apify_runs")

    async def seconds_since_start(self, run_id: uuid.UUID) -> float:
        return await self._read(runs.seconds_since_start, "seconds_since_start", run_id=run_id)

    async def store_page(
        self,
        lease: Lease,
        run: runs.Run,
        *,
        platform: str,
        capability: str,
        page: Sequence[tuple[int, Any]],
    ) -> store.Counts:
        return await store.store_page(
            self.engine,
            lease,
            run,
            platform=platform,
            capability=capability,
            page=page,
            policy=self.policy,
        )

    async def mark_stored(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        return await self._update(
            lease,
            run_id,
            raw_stored_at=sa.func.now(),
            normalized_at=sa.func.now(),
            raw_item_count=sa.func.coalesce(tables.apify_runs.c.raw_item_count, 0),
        )
