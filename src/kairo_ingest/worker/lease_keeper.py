"""The lease keeper: heartbeats for every lease the process holds, and loss.

Every ``interval_seconds`` one statement extends all held leases, on a connection of its
own (a one-connection engine, never the pool the handlers use) and in a transaction
whose statement timeout is shorter than the interval, so a beat either lands or fails
within ``timeout_seconds``. Fenced page transactions never block it (``queue/sql.py``).

Loss is noticed with a margin. Between two checks at most ``interval + timeout`` pass, so
a job whose last successful extension is older than ``lease_seconds - (interval +
timeout)`` is given up at once, strictly before its database lease can end: the handler
is cancelled, and once its task has unwound the job is handed back (fenced, ready now,
the attempt spent) so nobody waits for the expiry and the reaper. A beat that finds the
row no longer ours (reclaimed, cancelled) loses the job without a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Callable, Mapping

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock as clock_module
from kairo_ingest import errors, logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import context, dedicated, maintenance

_log = logs.get("kairo_ingest.worker")

# The server-side statement timeout is this share of the client-side beat timeout, so the
# server gives up first and the connection stays usable.
_SERVER_SHARE = 0.8

LoseFn = Callable[[context.Slot, str], None]


def give_up_after(lease_seconds: float, interval_seconds: float, timeout_seconds: float) -> float:
    """Seconds after the last successful extension at which a lease is given up locally."""
    return lease_seconds - (interval_seconds + timeout_seconds)


class LeaseKeeper:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        slots: Mapping[uuid.UUID, context.Slot],
        lose: LoseFn,
        *,
        lease_seconds: float,
        interval_seconds: float,
        timeout_seconds: float,
        clock: clock_module.Clock,
        rng: random.Random,
    ) -> None:
        if give_up_after(lease_seconds, interval_seconds, timeout_seconds) <= 0:
            raise errors.ConfigError("heartbeat interval plus timeout must be below the lease")
        self._engine = engine
        self._slots = slots
        self._lose = lose
        self._lease_seconds = lease_seconds
        self._interval = interval_seconds
        self._timeout = timeout_seconds
        self.give_up_after_seconds = give_up_after(lease_seconds, interval_seconds, timeout_seconds)
        self._clock = clock
        self._rng = rng
        # The heartbeat's connection comes from an engine of its own (one connection, no
        # overflow): handlers that exhaust the shared pool, or a reconnect after a failed
        # beat while they do, can never leave the heartbeat waiting for a connection.
        self._own_engine = db_engine.sibling(
            engine, pool_size=1, application_name="kairo-ingest-heartbeat"
        )
        self._conn = dedicated.DedicatedConnection(self._own_engine, autocommit=False)
        self._releases: set[asyncio.Task[None]] = set()
        self.beats = 0  # completed heartbeat rounds (tests wait on it instead of sleeping)
        self.beat_done = asyncio.Event()  # set after every round

    async def connect(self) -> None:
        """Take the keeper's own connection before any handler can exhaust the pool
        (best effort: after an error the first beat connects)."""
        try:
            async with asyncio.timeout(self._lease_seconds / 3.0):
                await self._conn.get()
        except Exception as exc:  # noqa: BLE001 - beats reconnect on their own
            await self._conn.discard()
            maintenance.log_loop_error("heartbeat", exc, 1, self._interval)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await stop.wait()
                if stop.is_set():
                    return
                failures = await self._beat(failures)
                self._check_expiry()
                self.beats += 1
                self.beat_done.set()
        finally:
            await self._conn.close()
            await self._own_engine.dispose()
            if self._releases:
                await asyncio.wait(self._releases, timeout=self._lease_seconds)

    async def _beat(self, failures: int) -> int:
        held = [
            s
            for s in self._slots.values()
            if s.state in (context.SlotState.RUNNING, context.SlotState.FINISHING)
        ]
        if not held:
            return failures
        sent_at = self._clock.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                beat = await queue_jobs.beat(
                    await self._conn.get(),
                    [s.lease for s in held],
                    self._lease_seconds,
                    statement_timeout_seconds=self._timeout * _SERVER_SHARE,
                )
        except Exception as exc:  # noqa: BLE001 - keep beating through outages
            await self._conn.discard()
            failures += 1
            maintenance.log_loop_error("heartbeat", exc, failures, self._interval)
            return failures
        for slot in held:
            if slot.lease.job_id in beat.extended:
                slot.extended_at = sent_at
            elif slot.lease.job_id in beat.lost:
                self._lose(slot, "not extended: reclaimed, cancelled or finished")
        return 0

    def _check_expiry(self) -> None:
        # Whatever the database said (or could not say): a job whose lease may end before
        # the next check is given up now, while its database lease still holds.
        now = self._clock.monotonic()
        for slot in list(self._slots.values()):
            if slot.state is not context.SlotState.RUNNING:
                continue
            if now - slot.extended_at >= self.give_up_after_seconds:
                self._lose(slot, "heartbeats could not extend the lease in time; given up")
                self._hand_back(slot)

    def _hand_back(self, slot: context.Slot) -> None:
        task = asyncio.create_task(self._release(slot), name=f"give-up-{slot.lease.job_id}")
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, slot: context.Slot) -> None:
        # The handler's own transactions roll back as its task unwinds; the release would
        # wait for them anyway (it changes the token), so let the task end first.
        if slot.task is not None and not slot.task.done():
            await asyncio.wait([slot.task], timeout=self._lease_seconds)
        deadline = clock_module.Deadline.after(self._lease_seconds, self._clock)
        failures = 0
        while not deadline.expired():
            try:
                await queue_jobs.give_up(self._engine, [slot.lease])
                return
            except Exception as exc:  # noqa: BLE001 - the reaper requeues it after expiry
                failures += 1
                delay = retry_rules.retry_delay_seconds(failures, self._rng)
                maintenance.log_loop_error("give_up", exc, failures, delay)
                await asyncio.sleep(min(delay, deadline.remaining()))
