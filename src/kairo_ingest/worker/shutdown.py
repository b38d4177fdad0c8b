"""Shutdown: wait out the grace period, then hand back what is still running.

A stop request stops claiming at once. In-flight jobs get ``shutdown_grace_seconds`` to
finish (a second request skips the rest of it); the worker then cancels the handlers
still running and releases their jobs to pending in one fenced statement, ready now with
the interrupted attempt refunded, so no job waits for its lease to expire after a deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock as clock_module
from kairo_ingest import errors, logs
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import context, maintenance
from kairo_ingest.worker import tasks as tasks_module

_log = logs.get("kairo_ingest.worker")

RELEASE_TRIES = 3


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
    _log.info("shutdown_grace", in_flight=len(slots), grace_seconds=grace_seconds)
    deadline = clock_module.Deadline.after(grace_seconds, clock)
    while slots and not skip_grace.is_set() and not deadline.expired():
        slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline.remaining()):
                await slot_freed.wait()


async def release(
    engine: sa_async.AsyncEngine, slots: Sequence[context.Slot], rng: random.Random
) -> None:
    """Hand the slots' jobs back (fenced, attempt refunded); a few tries, then leave them
    to the reaper."""
    if not slots:
        return
    leases = [s.lease for s in slots]
    for failures in range(1, RELEASE_TRIES + 1):
        try:
            released = await queue_jobs.release(engine, leases)
        except Exception as exc:  # noqa: BLE001 - the reaper will requeue them later
            delay = retry_rules.retry_delay_seconds(failures, rng)
            maintenance.log_loop_error("release", exc, failures, delay)
            await asyncio.sleep(delay)
            continue
        _log.info("jobs_released", released=released, cancelled=len(slots))
        return
    _log.error("release_failed", jobs=len(slots))


async def stop_jobs(
    tasks: tasks_module.JobTasks,
    release_slots: Callable[[list[context.Slot]], Awaitable[None]],
    cancel_timeout_seconds: float,
) -> None:
    """After the grace: cancel the handlers still running and release their jobs; let the
    finisher land the final writes already in flight."""
    slots = tasks.slots
    remaining = [s for s in slots.values() if s.state is context.SlotState.RUNNING]
    for slot in remaining:
        tasks.leave_running(slot, context.SlotState.ABANDONED)
        if slot.task is not None:
            slot.task.cancel()
    in_flight = [s.task for s in slots.values() if s.task is not None]
    if remaining:
        # Handlers get a moment to unwind their own cleanup before the release.
        cancelled = [s.task for s in remaining if s.task is not None]
        await asyncio.wait(cancelled, timeout=cancel_timeout_seconds)
        await asyncio.shield(release_slots(remaining))
    if in_flight:
        await asyncio.wait(in_flight, timeout=cancel_timeout_seconds)


async def bounded(task: asyncio.Task[None], seconds: float) -> None:
    """Await a background task for at most ``seconds``, then cancel it."""
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elif not task.cancelled() and (exc := task.exception()) is not None:
        _log.error("worker_task_crashed", task=task.get_name(), error=errors.describe(exc))
