"""The worker: claims jobs into free slots and runs each handler in its own task.

One process runs up to ``concurrency`` jobs as coroutines on one event loop. Its parts::

    claim loop   (here)   claims up to the free slots in one statement; sleeps until a slot
                          frees, a NOTIFY arrives (coalesced) or the poll interval passes
    job tasks    (here)   one named task per job, job_id/brand_id bound into its log
                          context; a handler's exception is its job's failure, never ours
    lease keeper (lease_keeper.py)  heartbeats on a connection of its own; gives a lease
                          up with a margin before the database lease ends, and hands it back;
                          stops a job an operator cancelled; hands back orphaned claims;
                          keeps the process's row in the workers registry
    finisher     (finisher.py)  batches the final writes in a task of its own
    maintenance  (maintenance.py)  reaper, promoter, sampler, pruner, registry pruner,
                          raw-item partitions, and the service's loops (the run ledger)
    listener     (listener.py)  LISTEN kairo_jobs on its own connection (optional)
    shutdown     (shutdown.py)  the whole exit within the budget: grace, then cancel and
                          release what still runs, final writes, hand-back

A claim and the keeper's hand-back of orphaned rows never overlap (``_claim_lock``): a
claim's rows are in the slots before any hand-back looks. A claim that fails or is
cancelled may have committed before its answer was lost: its rows are handed back at
once (or by the keeper's next beat, or at shutdown), never left for the reaper.

Settings come in one :class:`~kairo_ingest.worker.parameters.WorkerConfig`. With
``drain=True``, :meth:`Worker.run` returns once nothing is ready, running or in flight,
and :attr:`Worker.drain_report` says what still waits on a backoff.

Database errors in any loop are logged with their classified kind and retried with
backoff; the worker keeps running through a database restart. See docs/queue.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Mapping, Sequence

from sqlalchemy.ext import asyncio as sa_async

import kairo_ingest
from kairo_ingest import clock as clock_module
from kairo_ingest import errors, logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import (
    claiming,
    context,
    gc_tuning,
    maintenance,
    parameters,
    pg_queue,
    ports,
    shutdown,
)
from kairo_ingest.worker import finisher as finisher_module
from kairo_ingest.worker import lease_keeper as lease_keeper_module
from kairo_ingest.worker import listener as listener_module
from kairo_ingest.worker import tasks as tasks_module

_log = logs.get("kairo_ingest.worker")


Outcome = context.Outcome
JobContext = context.JobContext
Handler = context.Handler
_State = context.SlotState
_Slot = context.Slot


class Worker:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        handlers: Mapping[str, Handler],
        config: parameters.WorkerConfig,
        *,
        clock: clock_module.Clock = clock_module.SYSTEM,
        rng: random.Random | None = None,
        loops: Sequence[tuple[str, maintenance.Loop]] = (),
        queue: ports.JobQueue | None = None,
    ) -> None:
        if not handlers:
            raise errors.ConfigError("the worker needs at least one job handler")
        config.validate()
        self.config = config
        self._engine = engine
        # The queue port. By default the PostgreSQL adapter: on the engine's pool, and on
        # the claim loop's, the keeper's and the finisher's own connections. A given queue
        # (tests: the in-memory one) serves every queue call instead.
        self._injected = queue
        self._queue: ports.JobQueue = queue or pg_queue.PostgresJobQueue(engine)
        self._handlers = dict(handlers)
        self._loops = list(loops)  # maintenance loops the service adds (the run ledger)
        self._kinds = sorted(self._handlers)
        self.owner = config.owner
        self._clock = clock
        self._rng = rng or random.Random()
        self._caps = endings.Caps(
            max_interruptions=config.max_interruptions, max_snoozes=config.max_snoozes
        )
        self._retry = finisher_module.RetryPolicy(
            base_seconds=config.retry_base_seconds,
            cap_seconds=config.retry_cap_seconds,
            snooze_seconds=config.snooze_seconds,
            caps=self._caps,
        )
        self._listen_dsn: str | None = None
        if config.listen:
            url = config.dsn_for_listen or engine.url.render_as_string(hide_password=False)
            self._listen_dsn = db_engine.plain_dsn(url)

        self._wake = asyncio.Event()  # claim loop: a slot freed, a NOTIFY, or stop
        self._stop = asyncio.Event()
        self._skip_grace = asyncio.Event()
        self._heartbeat_stop = asyncio.Event()
        self._drain = False
        self._exit: shutdown.ExitBudget | None = None  # started by the first stop request
        self._claim_lock = asyncio.Lock()  # a claim, or the keeper's hand-back of orphans
        self._finisher = finisher_module.Finisher(engine, self._retry, rng=self._rng, queue=queue)
        self._tasks = tasks_module.JobTasks(
            engine, handlers, self._finisher, clock=clock, wake=self._wake.set
        )
        self._slots = self._tasks.slots
        # One statement per claim on a direct server; SET LOCAL transactions behind a pooler.
        self._claim_conn = claiming.ClaimConnection(engine)
        self._keeper = lease_keeper_module.LeaseKeeper(
            engine,
            self._tasks,
            lease_seconds=config.lease_seconds,
            interval_seconds=config.beat_interval_seconds,
            timeout_seconds=config.beat_timeout_seconds,
            clock=clock,
            rng=self._rng,
            registration=queue_jobs.Registration(
                owner=config.owner,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                version=kairo_ingest.__version__,
                concurrency=config.concurrency,
                heartbeat_interval_seconds=config.beat_interval_seconds,
            ),
            claim_lock=self._claim_lock,
            caps=self._caps,
            queue=queue,
        )
        self._listener: listener_module.Listener | None = None
        if self._listen_dsn is not None:
            self._listener = listener_module.Listener(self._listen_dsn, self._on_notify)

        self.ready = asyncio.Event()  # set while run() is claiming
        self.idle = asyncio.Event()  # set while caught up and waiting for work
        # Set when drain mode ends: pending jobs that wait on a backoff, and until when.
        self.drain_report: queue_jobs.Waiting | None = None
        self.claims = 0  # claim statements issued (tests check the NOTIFY debounce with it)
        self.claim_seconds = 0.0  # time the claim loop spent waiting on claim statements

    # ---------------------------------------------------------------- public surface

    @property
    def stopping(self) -> bool:
        """A stop was requested: not claiming any more (``/readyz`` answers 503)."""
        return self._stop.is_set()

    @property
    def draining(self) -> bool:
        """Running in drain mode: :meth:`run` returns once the queue is idle."""
        return self._drain

    @property
    def in_flight(self) -> int:
        return len(self._slots)

    @property
    def listening(self) -> asyncio.Event | None:
        """Set while the LISTEN connection is up; None when LISTEN is off."""
        return None if self._listener is None else self._listener.listening

    @property
    def notifications(self) -> int:
        """NOTIFYs received on the LISTEN connection so far."""
        return 0 if self._listener is None else self._listener.notifications

    @property
    def listen_connects(self) -> int:
        """How often the LISTEN connection was (re)established."""
        return 0 if self._listener is None else self._listener.connects

    def request_stop(self) -> None:
        """First call: stop claiming and let in-flight jobs finish within the grace period.
        Second call: skip the grace; cancel and release the remaining jobs now."""
        if self._stop.is_set():
            if not self._skip_grace.is_set():
                _log.info("shutdown_grace_skipped", in_flight=len(self._slots))
            self._skip_grace.set()
        else:
            self._exit = shutdown.ExitBudget.start(self.config.shutdown_grace_seconds, self._clock)
            _log.info(
                "shutdown_requested",
                in_flight=len(self._slots),
                exit_within_seconds=self.config.shutdown_grace_seconds,
            )
            self._stop.set()
        self._wake.set()
        self._tasks.slot_freed.set()

    async def run(self, *, drain: bool = False) -> None:
        """Claim and run jobs until stopped (or, with ``drain``, until the queue is idle)."""
        self._drain = drain
        if self.config.tune_gc:
            gc_tuning.tune()
        self._tasks.job_log = _log.bind(owner=self.owner)
        await self._keeper.connect()
        finishing = asyncio.create_task(self._finisher.run(), name="kairo-worker-finisher")
        heartbeat = asyncio.create_task(
            self._keeper.run(self._heartbeat_stop), name="kairo-worker-heartbeat"
        )
        cfg = self.config
        background = maintenance.start(
            self._engine,
            cfg,
            self._stop,
            self._rng,
            on_requeued=self._wake.set,
            caps=self._caps,
            loops=self._loops,
            queue=self._queue,
        )
        if self._listener is not None:
            listening = self._listener.run(self._stop)
            background.append(asyncio.create_task(listening, name="kairo-worker-listener"))
        _log.info(
            "worker_started",
            owner=self.owner,
            kinds=self._kinds,
            concurrency=cfg.concurrency,
            lease_seconds=cfg.lease_seconds,
            listen=self._listener is not None,
            drain=drain,
        )
        self.ready.set()
        try:
            try:
                await self._claim_loop()
            finally:
                await self._claim_conn.close()
        except asyncio.CancelledError:
            self._skip_grace.set()
            raise
        finally:
            self.ready.clear()
            self.idle.clear()
            if self._exit is None:
                self._exit = shutdown.ExitBudget.start(cfg.shutdown_grace_seconds, self._clock)
            self._stop.set()
            budget = self._exit
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            try:
                await self._shutdown(budget)
                self._finisher.close()
                await shutdown.bounded(finishing, budget.share(0.5))
            finally:
                self._heartbeat_stop.set()
                await shutdown.bounded(heartbeat, budget.share(0.5))
                await self._keeper.finish(budget.remaining())
            _log.info("worker_stopped", owner=self.owner)

    # ---------------------------------------------------------------- claiming

    def _on_notify(self, payload: str) -> None:
        # A burst of notifications sets the event once: the claim loop claims once for it.
        if not payload or payload in self._handlers:
            self._wake.set()

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            free = self._free_slots()
            if free <= 0:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()
            claimed_at = self._clock.monotonic()
            try:
                leases = await self._claim(free, claimed_at)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive database outages
                failures += 1
                await self._pause_after_error("claim", exc, failures)
                continue
            failures = 0
            if self._stop.is_set():
                return  # stopped while the claim was in flight: shutdown releases them
            if len(leases) == free:
                continue
            if self._drain and not leases and not self._slots:
                try:
                    busy = await self._queue.has_ready_or_running(kinds=self._kinds)
                except Exception as exc:  # noqa: BLE001 - the loop must outlive database outages
                    failures += 1
                    await self._claim_conn.discard()
                    await self._pause_after_error("drain_check", exc, failures)
                    continue
                if not busy:
                    self.drain_report = await maintenance.report_drained(
                        self._queue, self._kinds, self.owner
                    )
                    return
            # Caught up: nothing more is ready. Sleep until a NOTIFY, a freed slot or the poll.
            self.idle.set()
            await self._wait_for_wake(self.config.poll_interval_seconds)
            self.idle.clear()

    async def _claim(self, free: int, claimed_at: float) -> list[queue_jobs.Lease]:
        """One claim; its jobs are in the slots (or, after a stop request, on their way
        back) before the lock is let go, so the keeper's hand-back never sees them unheld.
        A claim that fails may have committed before its answer was lost: what this worker
        owns but does not hold is handed back at once (if the database cannot take that
        now, the keeper's next beat does; a cancelled claim's rows, the shutdown)."""
        async with self._claim_lock:
            self.claims += 1
            try:
                claimer = self._claim_conn if self._injected is None else self._injected
                leases = await claimer.claim(
                    owner=self.owner,
                    limit=free,
                    lease_seconds=self.config.lease_seconds,
                    kinds=self._kinds,
                )
            except Exception:
                self.claim_seconds += self._clock.monotonic() - claimed_at
                await self._claim_conn.discard()
                await self._keeper.hand_back_held_lock(
                    self.config.beat_timeout_seconds, shared_pool=True
                )
                raise
            except BaseException:
                await self._claim_conn.discard()
                raise
            self.claim_seconds += self._clock.monotonic() - claimed_at
            if self._stop.is_set():
                # Stopped while the claim was in flight: hand the jobs straight back.
                for lease in leases:
                    self._tasks.writing[lease.token] = lease
            else:
                for lease in leases:
                    self._tasks.start(lease, claimed_at)
        if self._stop.is_set() and leases:
            try:
                await shutdown.release(
                    self._queue,
                    leases,
                    self._rng,
                    seconds=self.config.beat_timeout_seconds,
                    caps=self._caps,
                    clock=self._clock,
                )
            finally:
                for lease in leases:
                    self._tasks.writing.pop(lease.token, None)
        return leases

    def _free_slots(self) -> int:
        # A job whose handler returned no longer takes a slot while its final write is
        # queued, so claiming overlaps the previous batch's completion; at most another
        # `concurrency` jobs may wait for their write (backpressure when writes are slow).
        slots = self.config.concurrency
        return min(slots - self._tasks.running, 2 * slots - len(self._slots))

    async def _wait_for_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _pause_after_error(self, loop: str, exc: Exception, failures: int) -> None:
        delay = retry_rules.retry_delay_seconds(failures, self._rng)
        maintenance.log_loop_error(loop, exc, failures, delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()

    @property
    def lease_keeper(self) -> lease_keeper_module.LeaseKeeper:
        return self._keeper

    # ---------------------------------------------------------------- shutdown

    async def _shutdown(self, budget: shutdown.ExitBudget) -> None:
        await shutdown.wait_for_grace(
            self._slots,
            self._tasks.slot_freed,
            self._skip_grace,
            budget.grace_left(),
            self._clock,
        )
        await shutdown.stop_jobs(
            self._tasks, self._release, budget, self.config.cancel_timeout_seconds
        )

    async def _release(self, slots: list[_Slot], seconds: float) -> None:
        await shutdown.release(
            self._queue,
            [slot.lease for slot in slots],
            self._rng,
            seconds=seconds,
            caps=self._caps,
            clock=self._clock,
        )
