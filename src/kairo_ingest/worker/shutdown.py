"""Shutdown: the whole exit within ``shutdown_grace_seconds``.

A stop request stops claiming at once and starts the exit's clock
(:class:`ExitBudget`). Everything the worker does on its way out fits in
``KAIRO_SHUTDOWN_GRACE_SECONDS`` (25 s by default, inside Kubernetes' 30 s termination
grace): in-flight jobs get the budget less a reserve (:func:`grace_seconds`) to finish (a
second request skips the rest of it); the worker then cancels the handlers still
running, gives them a moment to unwind, releases their jobs to pending in one fenced
statement (ready now, the attempt refunded), lets the finisher land the final writes
already queued, hands back anything else it still owns, and marks itself stopped. Each
step takes a share of what is left; a step that cannot finish in its share is left to
the reaper, so the process always exits in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

from kairo_ingest import clock as clock_module
from kairo_ingest import errors, logs
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import context, maintenance, ports
from kairo_ingest.worker import tasks as tasks_module

_log = logs.get("kairo_ingest.worker")

# What the grace leaves for the rest of the exit: 40% of the budget, at most 10 s.
RESERVE_SHARE = 0.4
RESERVE_MAX_SECONDS = 10.0


def grace_seconds(total_seconds: float) -> float:
    """How long in-flight jobs may run on after a stop request, out of the exit's budget."""
    return max(0.0, total_seconds - min(total_seconds * RESERVE_SHARE, RESERVE_MAX_SECONDS))


@dataclasses.dataclass(frozen=True, slots=True)
class ExitBudget:
    """The exit's clock: started by the first stop request."""

    total_seconds: float
    deadline: clock_module.Deadline

    @classmethod
    def start(cls, total_seconds: float, clock: clock_module.Clock) -> ExitBudget:
        return cls(total_seconds, clock_module.Deadline.after(total_seconds, clock))

    def remaining(self) -> float:
        return self.deadline.remaining()

    def share(self, fraction: float) -> float:
        """A step's share of what is left (seconds)."""
        return self.remaining() * fraction

    def grace_left(self) -> float:
        """What is left of the in-flight jobs' grace."""
        reserve = self.total_seconds - grace_seconds(self.total_seconds)
        return max(0.0, self.remaining() - reserve)


async def wait_for_grace(
    slots: Mapping[uuid.UUID, context.Slot],
    slot_freed: asyncio.Event,
    skip_grace: asyncio.Event,
    grace_seconds: float,
    clock: clock_module.Clock,
) -> None:
    """Wait until no job is held, the grace period ends, or the grace is skipped."""
    if not slots or skip_grace.is_set():
        return
    _log.info("shutdown_grace", in_flight=len(slots), grace_seconds=round(grace_seconds, 3))
    deadline = clock_module.Deadline.after(grace_seconds, clock)
    while slots and not skip_grace.is_set() and not deadline.expired():
        slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline.remaining()):
                await slot_freed.wait()


async def release(
    queue: ports.JobQueue,
    leases: Sequence[queue_jobs.Lease],
    rng: random.Random,
    *,
    seconds: float,
    caps: endings.Caps = endings.DEFAULT_CAPS,
    clock: clock_module.Clock = clock_module.SYSTEM,
) -> None:
    """Hand the leases' jobs back (fenced, attempt refunded), trying for at most
    ``seconds``; then leave them to the reaper."""
    if not leases:
        return
    deadline = clock_module.Deadline.after(seconds, clock)
    failures = 0
    while True:
        try:
            async with asyncio.timeout(max(0.001, deadline.remaining())):
                released = await queue.release(leases, caps=caps)
        except Exception as exc:  # noqa: BLE001 - the reaper will requeue them later
            failures += 1
            delay = retry_rules.retry_delay_seconds(failures, rng)
            if delay >= deadline.remaining():
                _log.error("release_failed", jobs=len(leases), error=errors.describe(exc))
                return
            maintenance.log_loop_error("release", exc, failures, delay)
            await asyncio.sleep(delay)
            continue
        _log.info("jobs_released", released=released, cancelled=len(leases))
        return


async def stop_jobs(
    tasks: tasks_module.JobTasks,
    release_slots: Callable[[list[context.Slot], float], Awaitable[None]],
    budget: ExitBudget,
    cancel_timeout_seconds: float,
) -> None:
    """After the grace: cancel the handlers still running and release their jobs; let the
    tasks whose final write is queued hand it to the finisher. Within the budget."""
    slots = tasks.slots
    remaining = [s for s in slots.values() if s.state is context.SlotState.RUNNING]
    for slot in remaining:
        tasks.leave_running(slot, context.SlotState.ABANDONED)
        tasks.writing[slot.lease.token] = slot.lease
        if slot.task is not None:
            slot.task.cancel()
    in_flight = [s.task for s in slots.values() if s.task is not None] + list(tasks.unwinding)
    try:
        if remaining:
            # Handlers get a moment to unwind their own cleanup before the release.
            cancelled = [s.task for s in remaining if s.task is not None]
            unwind = min(cancel_timeout_seconds, budget.share(0.3))
            if cancelled and unwind > 0:
                await asyncio.wait(cancelled, timeout=unwind)
            await asyncio.shield(release_slots(remaining, budget.share(0.5)))
    finally:
        for slot in remaining:
            tasks.writing.pop(slot.lease.token, None)
    if in_flight and budget.share(0.3) > 0:
        await asyncio.wait(in_flight, timeout=min(cancel_timeout_seconds, budget.share(0.3)))


async def bounded(task: asyncio.Task[None], seconds: float) -> None:
    """Await a background task for at most ``seconds``, then cancel it."""
    if not task.done() and seconds > 0:
        await asyncio.wait([task], timeout=seconds)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elif not task.cancelled() and (exc := task.exception()) is not None:
        _log.error("worker_task_crashed", task=task.get_name(), error=errors.describe(exc))
