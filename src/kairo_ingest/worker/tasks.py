"""The job tasks: one named task per claimed job, and the slots that track them.

A handler's exception (or a ``CancelledError`` nobody asked for) becomes its job's failed
attempt, never the worker's; its outcome goes to the finisher, and the task awaits the
write. The finisher's own task makes it, so a cancel during shutdown does not lose it.
A job whose lease is lost (the keeper's verdict, or a fenced write in the handler) is
cancelled and writes nothing more.

One job, one task per process: when a claim returns a job whose previous attempt's task
is still unwinding here (its lease was reclaimed or given up, or an operator retried the
job, while its shielded clean-up still runs), the new task waits until the old one is
gone before its handler starts. Its lease is held (and heartbeated) meanwhile.

:meth:`JobTasks.held_tokens` is every lease token this process still holds or is still
writing for: the job slots, and the attempts the keeper or shutdown is ending outside
the finisher (:attr:`JobTasks.writing`). Anything else this worker owns in the database is
an orphan of a lost claim answer, handed back by the keeper.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock as clock_module
from kairo_ingest import errors, logs, metrics, tracing
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import context
from kairo_ingest.worker import finisher as finisher_module

_log = logs.get("kairo_ingest.worker")

Outcome = context.Outcome
_State = context.SlotState
_Slot = context.Slot


class JobTasks:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        handlers: Mapping[str, context.Handler],
        finisher: finisher_module.Finisher,
        *,
        clock: clock_module.Clock,
        wake: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._handlers = dict(handlers)
        self._finisher = finisher
        self._clock = clock
        self._wake = wake
        self.slots: dict[uuid.UUID, context.Slot] = {}  # every job this process holds
        self.running = 0  # of which handlers still run (these take the claim slots)
        # Attempts being ended outside the finisher (give-up, operator cancel, release), by
        # lease token, until their write lands or is abandoned.
        self.writing: dict[uuid.UUID, queue_jobs.Lease] = {}
        # Tasks of attempts a newer claim of the same job replaced in `slots`, still unwinding,
        # all together and by job (a new attempt waits for every one of its job's).
        self.unwinding: set[asyncio.Task[None]] = set()
        self._unwinding_by_job: dict[uuid.UUID, set[asyncio.Task[None]]] = {}
        self.slot_freed = asyncio.Event()
        # The structlog proxy re-resolves its configuration on every call; jobs log through
        # a logger resolved once per run() instead (the hot path logs twice per job).
        self.job_log: Any = _log
        self._durations = {kind: metrics.JOB_DURATION.labels(kind=kind) for kind in handlers}

    def context(self, lease: queue_jobs.Lease) -> context.JobContext:
        return context.JobContext(lease=lease, engine=self._engine, lease_lost=asyncio.Event())

    def held_tokens(self) -> set[uuid.UUID]:
        """Every lease token this process holds or is still ending an attempt under."""
        return {slot.lease.token for slot in self.slots.values()} | set(self.writing)

    def start(self, lease: queue_jobs.Lease, claimed_at: float) -> None:
        slot = _Slot(lease, self.context(lease), claimed_at)
        previous = self.slots.get(lease.job_id)
        if previous is not None and previous.task is not None and not previous.task.done():
            # A new claim of the job proves the old lease moved on (reclaimed, or retried by
            # an operator) even if no heartbeat has said so yet: stop the old attempt.
            self.lose(previous, "the job was claimed again: its lease had moved on")
            self._unwinds(lease.job_id, previous.task)
        # Every earlier attempt of the job still unwinding here, not just the last one: an
        # attempt that was itself lost while it waited ends at once, before the ones it
        # waited for.
        after = [task for task in self._unwinding_by_job.get(lease.job_id, ()) if not task.done()]
        self.slots[lease.job_id] = slot
        self.running += 1
        slot.task = asyncio.create_task(
            self._run_job(slot, after), name=f"job-{lease.kind}-{lease.job_id}"
        )
        slot.task.add_done_callback(lambda task: self._job_done(slot, task))
        metrics.JOBS_IN_FLIGHT.inc()

    def _unwinds(self, job_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self.unwinding.add(task)
        self._unwinding_by_job.setdefault(job_id, set()).add(task)

        def gone(done: asyncio.Task[None]) -> None:
            self.unwinding.discard(done)
            left = self._unwinding_by_job.get(job_id)
            if left is not None:
                left.discard(done)
                if not left:
                    del self._unwinding_by_job[job_id]

        task.add_done_callback(gone)

    async def _run_job(self, slot: _Slot, after: list[asyncio.Task[None]]) -> None:
        lease = slot.lease
        # This task's own context (a copy): bound once, rendered only if a line is logged.
        logs.bind_task(
            job_id=lease.job_id, brand_id=lease.brand_id, kind=lease.kind, attempt=lease.attempts
        )
        log = self.job_log
        started = self._clock.monotonic()
        # The job's span: a root, or the child of the trace its enqueue passed. Everything
        # the handler does (sources, Apify requests, page writes) nests under it.
        with tracing.span(
            f"job {lease.kind}",
            {
                "kairo.job.id": str(lease.job_id),
                "kairo.job.kind": lease.kind,
                "kairo.brand.id": str(lease.brand_id) if lease.brand_id is not None else None,
                "kairo.job.attempt": lease.attempts,
                "kairo.job.max_attempts": lease.max_attempts,
            },
            context=tracing.parent(lease.traceparent),
            kind=tracing.SpanKind.CONSUMER,
        ) as job_span:
            try:
                if after:
                    # One job, one task: the job's earlier attempts still unwind here.
                    log.info("job_waits_for_its_previous_task", tasks=len(after))
                    await asyncio.wait(after)
                log.debug("job_started", max_attempts=lease.max_attempts)
                started = self._clock.monotonic()
                result: object = await self._handlers[lease.kind](slot.context)
                outcome = _as_outcome(result)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if slot.state is not _State.RUNNING or (task is not None and task.cancelling()):
                    log.info("job_interrupted", reason=slot.state.value)
                    raise
                # Nobody cancelled this task: the handler let a CancelledError of its own
                # escape.
                outcome = Outcome(error=errors.HandlerError("the handler raised CancelledError"))
            except Exception as exc:  # noqa: BLE001 - a handler's failure is its job's, not ours
                outcome = Outcome(error=exc)
            if outcome.error is not None:
                tracing.fail(job_span, outcome.error)
        duration = self._clock.monotonic() - started
        self._durations[lease.kind].observe(duration)
        if isinstance(outcome.error, errors.LeaseLostError):
            # A fenced write inside the handler found the lease gone: so is the job.
            self.lose(slot, "a fenced write in the handler found it lost", cancel=False)
        if slot.state is not _State.RUNNING:
            # Lost, or abandoned at shutdown while the handler ignored its cancellation:
            # nothing more is written for this attempt.
            return
        self.leave_running(slot, _State.FINISHING)
        written = self._finisher.submit(
            lease, evidence_status=outcome.evidence_status, error=outcome.error
        )
        # The finisher's task makes the write, not this one: if this task is cancelled
        # while it waits, the write still lands (the future is only how it hears back).
        stored = await written
        log.debug(
            "job_finished",
            ok=outcome.error is None,
            stored=stored,
            duration_seconds=round(duration, 4),
        )

    def _job_done(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        if self.slots.get(slot.lease.job_id) is slot:
            del self.slots[slot.lease.job_id]
        metrics.JOBS_IN_FLIGHT.dec()  # one per task started, whether or not it was replaced
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error(
                "job_task_crashed", job_id=str(slot.lease.job_id), error=errors.describe(exc)
            )
        self._wake()
        self.slot_freed.set()

    def leave_running(self, slot: _Slot, state: _State) -> None:
        slot.state = state
        self.running -= 1
        self._wake()

    def stop_cancelled(self, slot: _Slot) -> bool:
        """An operator cancelled the job: stop its handler; the caller ends the attempt
        ``cancelled`` once the task is gone. False when the handler no longer runs (its
        final write, fenced, lands as it is; the statement honours the cancel)."""
        if slot.state is not _State.RUNNING:
            return False
        self.leave_running(slot, _State.CANCELLING)
        self.writing[slot.lease.token] = slot.lease
        slot.context.lease_lost.set()
        if slot.task is not None:
            slot.task.cancel()
        _log.info("job_cancel_honoured", job_id=str(slot.lease.job_id))
        return True

    def lose(self, slot: _Slot, reason: str, cancel: bool = True) -> None:
        """The lease is gone: tell the handler, cancel its task, write nothing more."""
        if slot.state is not _State.RUNNING:
            return  # a finishing job's write is fenced; an abandoned one is being released
        self.leave_running(slot, _State.LOST)
        slot.context.lease_lost.set()
        if cancel and slot.task is not None:
            slot.task.cancel()
        metrics.LEASES_LOST.labels(kind=slot.lease.kind).inc()
        _log.warning(
            "lease_lost",
            job_id=str(slot.lease.job_id),
            reason=reason,
            attempt=slot.lease.attempts,
        )


def _as_outcome(result: object) -> Outcome:
    if isinstance(result, Outcome):
        return result
    if result is None:
        return Outcome()
    return Outcome(
        error=errors.HandlerError(f"handler returned {type(result).__name__}, not an Outcome")
    )
