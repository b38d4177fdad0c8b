"""The final status writes of a worker's jobs, batched.

A job task hands its outcome to :meth:`Finisher.submit` and awaits the returned future.
The write belongs to this module's task, so a job task cancelled while it waits (at
shutdown) loses nothing: the write lands, and the cancelled future is not resolved.
That task writes whatever has accumulated: every success in the batch in a single
fenced ``complete_many`` statement, and each failure through ``fail`` (retry, snooze or
fail for good). Batching is natural, with no timer: while one write is in flight the next
batch collects, so an idle worker writes at once and a busy one writes in bulk.

A write that fails because the database is unavailable is retried with backoff until it
lands (the lease keeps being extended meanwhile) or the finisher is closed; a fenced
write that finds the lease lost is logged and counted by the queue and not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import dedicated, pg_queue, ports

_log = logs.get("kairo_ingest.worker")

_T = TypeVar("_T")


@dataclasses.dataclass(eq=False, slots=True)
class _Pending:
    lease: queue_jobs.Lease
    evidence_status: dict[str, Any] | None
    error: BaseException | None
    done: asyncio.Future[bool]


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float
    cap_seconds: float
    snooze_seconds: float
    caps: endings.Caps = endings.DEFAULT_CAPS


class Finisher:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        policy: RetryPolicy,
        *,
        rng: random.Random | None = None,
        queue: ports.JobQueue | None = None,
    ) -> None:
        self._conn = dedicated.DedicatedConnection(engine)
        self._injected = queue  # None: the PostgreSQL adapter on this task's connection
        self._policy = policy
        self._rng = rng or random.Random()
        self._queue: list[_Pending] = []
        self._ready = asyncio.Event()
        self._closing = False

    def submit(
        self,
        lease: queue_jobs.Lease,
        *,
        evidence_status: dict[str, Any] | None,
        error: BaseException | None,
    ) -> asyncio.Future[bool]:
        """Queue the job's final write; the future resolves to True once it is stored
        (False when the lease had been lost and nothing was written)."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(lease, evidence_status, error, done))
        self._ready.set()
        return done

    async def run(self) -> None:
        """Write batches until closed and empty."""
        try:
            while True:
                if not self._queue:
                    if self._closing:
                        return
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                batch, self._queue = self._queue, []
                try:
                    await self._write(batch)
                finally:
                    for p in batch:  # cancelled mid-batch: nothing more is written for these
                        _resolve(p.done, False)
        finally:
            # Closed or cancelled: a job task waiting on its write must not wait forever.
            # Its lease expires and the reaper requeues it (at-least-once, never lost).
            for p in self._queue:
                _resolve(p.done, False)
            self._queue = []
            await self._conn.close()

    def close(self) -> None:
        """Finish what is queued, then let :meth:`run` return."""
        self._closing = True
        self._ready.set()

    async def _write(self, batch: list[_Pending]) -> None:
        successes = [p for p in batch if p.error is None]
        failures = [p for p in batch if p.error is not None]
        if successes:
            try:
                done = await self._complete(successes) or set()
            except _RefusedError:
                # The database refused the batch's values: find the job whose result
                # cannot be stored, so it alone fails.
                done = set()
                for p in successes:
                    try:
                        done |= await self._complete([p]) or set()
                    except _RefusedError as refused:
                        p.error = errors.JobError(
                            "the job's result could not be stored: "
                            + errors.describe(refused.__cause__ or refused),
                            kind=errors.ErrorKind.INTERNAL,
                            retryable=False,
                        )
                        p.evidence_status = None
                        failures.append(p)
            for p in successes:
                if p.error is None:
                    _resolve(p.done, p.lease.job_id in done)
        for p in failures:
            assert p.error is not None
            action = await self._persist(self._failing(p.lease, p.error, p.evidence_status), "fail")
            _resolve(p.done, action is not None)

    def _failing(
        self,
        lease: queue_jobs.Lease,
        error: BaseException,
        evidence_status: dict[str, Any] | None,
    ) -> Callable[[ports.JobQueue], Awaitable[retry_rules.Action | None]]:
        def write(queue: ports.JobQueue) -> Awaitable[retry_rules.Action | None]:
            return queue.fail(
                lease,
                error,
                evidence_status=evidence_status,
                base_seconds=self._policy.base_seconds,
                cap_seconds=self._policy.cap_seconds,
                snooze_seconds=self._policy.snooze_seconds,
                rng=self._rng,
                caps=self._policy.caps,
            )

        return write

    async def _complete(self, pending: list[_Pending]) -> set[uuid.UUID] | None:
        items = [(p.lease, p.evidence_status) for p in pending]
        return await self._persist(lambda queue: queue.complete_many(items), "complete")

    async def _on_connection(self) -> ports.JobQueue:
        if self._injected is not None:
            return self._injected
        return pg_queue.PostgresJobQueue(await self._conn.get())

    async def _persist(
        self, write: Callable[[ports.JobQueue], Awaitable[_T]], operation: str
    ) -> _T | None:
        """Run ``write(queue)`` (the queue port on this task's connection); while the
        database is unavailable keep retrying with backoff (the job stays in flight and its
        lease keeps being extended) until the finisher is closed. A write whose values the
        database refuses raises :class:`_RefusedError`.
        Any other error is logged and the write abandoned (None): the lease then expires
        and the reaper requeues the job, so the outcome is at-least-once, never lost."""
        failures = 0
        while True:
            try:
                return await write(await self._on_connection())
            except Exception as exc:  # classified below; the task must survive
                await self._conn.discard()
                if _refused(exc):
                    raise _RefusedError(operation) from exc
                kind, retryable, _ = errors.classify(exc)
                if self._closing or not retryable or not isinstance(exc, errors.DatabaseError):
                    _log.error(
                        "final_write_abandoned",
                        operation=operation,
                        error_kind=kind.value,
                        error=errors.describe(exc),
                    )
                    return None
                failures += 1
                delay = retry_rules.retry_delay_seconds(failures, self._rng)
                _log.warning(
                    "final_write_failed",
                    operation=operation,
                    error_kind=kind.value,
                    error=errors.describe(exc),
                    failures=failures,
                    retry_in_seconds=round(delay, 3),
                )
                await asyncio.sleep(delay)


class _RefusedError(Exception):
    """The database refused the values of a final write: the same write fails again."""


def _refused(exc: BaseException) -> bool:
    """A refused value (SQLSTATE 22/54), or a value the driver could not encode."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return False
        if isinstance(seen, (errors.DatabaseValueError, ValueError, TypeError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        future.set_result(value)
