"""The lease keeper: heartbeats for every lease the process holds, loss, operator cancels,
the hand-back of orphaned claims, and the process's row in the ``workers`` registry.

Every ``interval_seconds`` (and once at start) one statement extends all held leases and
upserts the process's registry row, on a connection of its own (a one-connection engine,
never the pool the handlers use) and in a transaction whose statement timeout is shorter
than the interval, so a beat either lands or fails within ``timeout_seconds``. Fenced
page transactions never block it (``queue/sql.py``).

Loss is noticed with a margin. Between two checks at most ``interval + timeout`` pass, so
a job whose last successful extension is older than ``lease_seconds - (interval +
timeout)`` is given up at once, strictly before its database lease can end: the handler
is cancelled, and once its task has unwound the job is handed back (fenced, ready now,
the attempt refunded and counted as an interruption) so nobody waits for the expiry and
the reaper. A beat that finds the row no longer ours (reclaimed, finished) loses the job
without a write. A beat that finds an operator's cancel stops the handler and, once its
task is gone, ends the job ``cancelled``.

After each beat, unless a claim is in flight (they share ``claim_lock``), the keeper
hands back every running row this process owns but does not hold
(:func:`kairo_ingest.queue.endings.hand_back`): a claim whose answer was lost leaves
such rows, and they are ready again within one interval instead of waiting for the reaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock as clock_module
from kairo_ingest import errors, logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import context, dedicated, maintenance, pg_queue, ports
from kairo_ingest.worker import tasks as tasks_module

_log = logs.get("kairo_ingest.worker")

# The server-side statement timeout is this share of the client-side beat timeout, so the
# server gives up first and the connection stays usable.
_SERVER_SHARE = 0.8
# The states whose leases a beat extends: the handler runs, its final write is queued, or
# it is being stopped (an operator's cancel, shutdown) and its end is about to be written.
_BEATEN = frozenset(
    {
        context.SlotState.RUNNING,
        context.SlotState.FINISHING,
        context.SlotState.CANCELLING,
        context.SlotState.ABANDONED,
    }
)


def give_up_after(lease_seconds: float, interval_seconds: float, timeout_seconds: float) -> float:
    """Seconds after the last successful extension at which a lease is given up locally."""
    return lease_seconds - (interval_seconds + timeout_seconds)


class LeaseKeeper:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        tasks: tasks_module.JobTasks,
        *,
        lease_seconds: float,
        interval_seconds: float,
        timeout_seconds: float,
        clock: clock_module.Clock,
        rng: random.Random,
        registration: queue_jobs.Registration,
        claim_lock: asyncio.Lock,
        caps: endings.Caps = endings.DEFAULT_CAPS,
        queue: ports.JobQueue | None = None,
    ) -> None:
        if give_up_after(lease_seconds, interval_seconds, timeout_seconds) <= 0:
            raise errors.ConfigError("heartbeat interval plus timeout must be below the lease")
        # The queue port: given (tests), or the PostgreSQL adapter on the handlers' pool
        # (attempt endings) and on the keeper's own connection (beats, hand-backs).
        self._injected = queue
        self._shared = queue or pg_queue.PostgresJobQueue(engine)
        self._tasks = tasks
        self._slots = tasks.slots
        self._lease_seconds = lease_seconds
        self._interval = interval_seconds
        self._timeout = timeout_seconds
        self.give_up_after_seconds = give_up_after(lease_seconds, interval_seconds, timeout_seconds)
        self._clock = clock
        self._rng = rng
        self._registration = registration
        self._claim_lock = claim_lock
        self._caps = caps
        # The heartbeat's connection comes from an engine of its own (one connection, no
        # overflow): handlers that exhaust the shared pool, or a reconnect after a failed
        # beat while they do, can never leave the heartbeat waiting for a connection.
        self._own_engine = db_engine.sibling(
            engine, pool_size=1, application_name="kairo-ingest-heartbeat"
        )
        self._conn = dedicated.DedicatedConnection(self._own_engine, autocommit=False)
        self._writes: set[asyncio.Task[None]] = set()
        self._closed = False
        self.beats = 0  # completed heartbeat rounds (tests wait on it instead of sleeping)
        self.beat_done = asyncio.Event()  # set after every round
        self.handed_back = 0  # orphaned rows handed back so far

    @property
    def owner(self) -> str:
        return self._registration.owner

    async def connect(self) -> None:
        """Take the keeper's own connection before any handler can exhaust the pool
        (best effort: after an error the first beat connects)."""
        if self._injected is not None:
            return
        try:
            async with asyncio.timeout(self._lease_seconds / 3.0):
                await self._conn.get()
        except Exception as exc:  # noqa: BLE001 - beats reconnect on their own
            await self._conn.discard()
            maintenance.log_loop_error("heartbeat", exc, 1, self._interval)

    async def run(self, stop: asyncio.Event) -> None:
        """Beat at once, then every interval, until ``stop`` is set.

        Rounds start ``interval`` apart: the hand-back after a beat only uses what is left
        of its round (and at most a beat's timeout), so two expiry checks stay at most
        ``interval + timeout`` apart and the give-up margin holds."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not stop.is_set():
            next_round = loop.time() + self._interval
            failures = await self._beat(failures)
            self._check_expiry()
            if failures == 0:
                await self.hand_back_orphans(min(self._timeout, next_round - loop.time()))
            self.beats += 1
            self.beat_done.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_round - loop.time())):
                    await stop.wait()

    async def finish(self, seconds: float) -> None:
        """The end of the process's exit, within ``seconds``: let the attempt endings in
        flight land, hand back whatever this process still owns, mark it stopped in the
        registry, close the connection."""
        deadline = clock_module.Deadline.after(max(0.0, seconds), self._clock)
        try:
            if self._writes:
                await asyncio.wait(self._writes, timeout=deadline.remaining() / 2)
            await self.hand_back_orphans(deadline.remaining() / 2)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(max(0.0, deadline.remaining())):
                    await (await self._on_connection()).stop_worker(self.owner)
        finally:
            self._closed = True
            for task in self._writes:
                task.cancel()
            await self._conn.close()
            await self._own_engine.dispose()

    async def _on_connection(self) -> ports.JobQueue:
        """The queue port on the keeper's own connection (a beat's statement timeout set
        locally in its transaction)."""
        if self._injected is not None:
            return self._injected
        return pg_queue.PostgresJobQueue(
            await self._conn.get(),
            beat_statement_timeout_seconds=self._timeout * _SERVER_SHARE,
        )

    async def _beat(self, failures: int) -> int:
        held = [s for s in self._slots.values() if s.state in _BEATEN]
        sent_at = self._clock.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                queue = await self._on_connection()
                beat = await queue.beat(
                    [s.lease for s in held], self._lease_seconds, registration=self._registration
                )
        except Exception as exc:  # noqa: BLE001 - keep beating through outages
            await self._conn.discard()
            failures += 1
            maintenance.log_loop_error("heartbeat", exc, failures, self._interval)
            return failures
        for slot in held:
            job_id = slot.lease.job_id
            if job_id in beat.extended:
                slot.extended_at = sent_at
            elif job_id in beat.lost:
                self._tasks.lose(slot, "not extended: reclaimed or finished")
            if job_id in beat.cancelling and self._tasks.stop_cancelled(slot):
                self._end_after_task(slot, self._stop_cancelled)
        return 0

    def _check_expiry(self) -> None:
        # Whatever the database said (or could not say): a job whose lease may end before
        # the next check is given up now, while its database lease still holds.
        now = self._clock.monotonic()
        for slot in list(self._slots.values()):
            if slot.state is not context.SlotState.RUNNING:
                continue
            if now - slot.extended_at >= self.give_up_after_seconds:
                self._tasks.lose(slot, "heartbeats could not extend the lease in time; given up")
                self._tasks.writing[slot.lease.token] = slot.lease
                self._end_after_task(slot, self._give_up)

    async def hand_back_orphans(self, seconds: float) -> None:
        """Hand back every running row this process owns but does not hold, unless a claim
        is in flight (its rows are not in the slots yet); best effort within ``seconds``."""
        if self._claim_lock.locked() or self._closed or seconds <= 0:
            return
        async with self._claim_lock:
            await self.hand_back_held_lock(seconds)

    async def hand_back_held_lock(self, seconds: float, *, shared_pool: bool = False) -> None:
        """:meth:`hand_back_orphans` for a caller that holds the claim lock. The keeper's
        own connection serves the keeper's task only; another task (the claim loop, after
        a failed claim) passes ``shared_pool`` and goes through the handlers' pool."""
        if self._closed or seconds <= 0:
            return
        held = self._tasks.held_tokens()
        try:
            async with asyncio.timeout(seconds):
                queue = self._shared if shared_pool else await self._on_connection()
                self.handed_back += await queue.hand_back(owner=self.owner, held=held)
        except Exception as exc:  # noqa: BLE001 - the next beat tries again
            if not shared_pool:
                await self._conn.discard()
            maintenance.log_loop_error("hand_back", exc, 1, self._interval)

    def _end_after_task(
        self, slot: context.Slot, write: Callable[[queue_jobs.Lease], Awaitable[int]]
    ) -> None:
        task = asyncio.create_task(
            self._write_after_task(slot, write), name=f"end-{slot.lease.job_id}"
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _give_up(self, lease: queue_jobs.Lease) -> int:
        return await self._shared.give_up([lease], caps=self._caps)

    async def _stop_cancelled(self, lease: queue_jobs.Lease) -> int:
        return await self._shared.stop_cancelled([lease])

    async def _write_after_task(
        self, slot: context.Slot, write: Callable[[queue_jobs.Lease], Awaitable[int]]
    ) -> None:
        # The handler's own transactions roll back as its task unwinds; the write would
        # wait for them anyway (it changes the token), so let the task end first.
        try:
            if slot.task is not None and not slot.task.done():
                await asyncio.wait([slot.task], timeout=self._lease_seconds)
            deadline = clock_module.Deadline.after(self._lease_seconds, self._clock)
            failures = 0
            while not deadline.expired():
                try:
                    await write(slot.lease)
                    return
                except Exception as exc:  # noqa: BLE001 - the reaper requeues it after expiry
                    failures += 1
                    delay = retry_rules.retry_delay_seconds(failures, self._rng)
                    maintenance.log_loop_error("end_attempt", exc, failures, delay)
                    await asyncio.sleep(min(delay, max(0.0, deadline.remaining())))
        finally:
            self._tasks.writing.pop(slot.lease.token, None)
