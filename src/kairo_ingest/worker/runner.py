"""The worker: claims jobs into free slots and runs each handler in its own task.

One process runs up to ``concurrency`` jobs as coroutines on one event loop::

    claim loop ── claims up to the free slots in one statement; sleeps until a slot frees,
                  a NOTIFY arrives (coalesced: a burst wakes it once), or the poll interval
    job tasks  ── one named task per job, with job_id/brand_id bound into its log context;
                  a handler's exception becomes the job's failure, never the loop's
    heartbeat  ── one task; every third of the lease it extends all held leases in one
                  statement. A lease it could not extend is lost: the handler task is
                  cancelled and nothing more is written for that attempt
    finisher   ── batches the final writes (complete / fail), shielded from cancellation
    reaper     ── reclaims expired leases of any worker, with backoff
    sampler    ── queue depth and oldest-ready-job age for the metrics
    pruner     ── deletes finished jobs past the retention (when one is set)
    listener   ── LISTEN kairo_jobs on its own connection (optional)

Shutdown (:meth:`Worker.request_stop`): claiming stops at once; in-flight jobs get
``shutdown_grace_seconds`` to finish; then the rest are cancelled and released to
pending in one statement with their attempt refunded. A second request skips the grace.
With ``drain=True``, :meth:`Worker.run` returns once nothing is ready, running or in flight.

Database errors in any loop are logged with their classified kind and retried with
backoff; the worker keeps running through a database restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock as clock_module
from kairo_ingest import errors, logs, metrics
from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import statuses
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.queue import sql as queue_sql
from kairo_ingest.worker import context, dedicated
from kairo_ingest.worker import finisher as finisher_module
from kairo_ingest.worker import lease_keeper as lease_keeper_module
from kairo_ingest.worker import listener as listener_module

_log = logs.get("kairo_ingest.worker")

FULL_STATS_EVERY = 20  # samples: finished-job counts refresh every 20 stats intervals


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
        *,
        owner: str,
        concurrency: int,
        lease_seconds: float,
        poll_interval_seconds: float,
        listen: bool,
        dsn_for_listen: str | None,
        retry_base_seconds: float,
        retry_cap_seconds: float,
        snooze_seconds: float,
        reap_interval_seconds: float,
        retention: dt.timedelta | None,
        shutdown_grace_seconds: float,
        clock: clock_module.Clock = clock_module.SYSTEM,
        heartbeat_interval_seconds: float | None = None,
        heartbeat_timeout_seconds: float | None = None,
        stats_interval_seconds: float = 15.0,
        prune_interval_seconds: float = 3600.0,
        cancel_timeout_seconds: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if not handlers:
            raise errors.ConfigError("the worker needs at least one job handler")
        if concurrency < 1:
            raise errors.ConfigError("concurrency must be at least 1", variable="KAIRO_CONCURRENCY")
        if lease_seconds <= 0:
            raise errors.ConfigError("lease must be positive", variable="KAIRO_LEASE_SECONDS")
        beat = (
            lease_seconds / 6.0
            if heartbeat_interval_seconds is None
            else heartbeat_interval_seconds
        )
        if not 0 < beat <= lease_seconds / 3.0:
            raise errors.ConfigError("heartbeats must run at least every third of the lease")
        beat_timeout = (
            beat / 2.0 if heartbeat_timeout_seconds is None else heartbeat_timeout_seconds
        )
        if not 0 < beat_timeout < beat:
            raise errors.ConfigError("a heartbeat's timeout must be shorter than its interval")
        self._engine = engine
        self._handlers = dict(handlers)
        self._kinds = sorted(self._handlers)
        self.owner = owner
        self._concurrency = concurrency
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval_seconds
        self._heartbeat_interval = beat
        self._reap_interval = reap_interval_seconds
        self._stats_interval = stats_interval_seconds
        self._prune_interval = prune_interval_seconds
        self._retention = retention
        self._grace = shutdown_grace_seconds
        self._cancel_timeout = cancel_timeout_seconds
        self._clock = clock
        self._rng = rng or random.Random()
        self._retry = finisher_module.RetryPolicy(
            base_seconds=retry_base_seconds,
            cap_seconds=retry_cap_seconds,
            snooze_seconds=snooze_seconds,
        )
        self._listen_dsn: str | None = None
        if listen:
            url = dsn_for_listen or engine.url.render_as_string(hide_password=False)
            self._listen_dsn = db_engine.plain_dsn(url)

        self._slots: dict[uuid.UUID, _Slot] = {}  # every job this process holds a lease on
        self._running = 0  # of which handlers still running (these take the slots)
        self._wake = asyncio.Event()  # claim loop: a slot freed, a NOTIFY, or stop
        self._slot_freed = asyncio.Event()
        self._stop = asyncio.Event()
        self._skip_grace = asyncio.Event()
        self._heartbeat_stop = asyncio.Event()
        self._drain = False
        self._finisher = finisher_module.Finisher(engine, self._retry, rng=self._rng)
        self._claim_conn = dedicated.DedicatedConnection(
            engine, setup=[queue_sql.CLAIM_SESSION_SETUP], reset=[queue_sql.CLAIM_SESSION_RESET]
        )
        self._keeper = lease_keeper_module.LeaseKeeper(
            engine,
            self._slots,
            self._lose,
            lease_seconds=lease_seconds,
            interval_seconds=beat,
            timeout_seconds=beat_timeout,
            clock=clock,
            rng=self._rng,
        )
        self._listener: listener_module.Listener | None = None
        if self._listen_dsn is not None:
            self._listener = listener_module.Listener(self._listen_dsn, self._on_notify)

        # The structlog proxy re-resolves its configuration on every call; jobs log through
        # a logger resolved once per run() instead (the hot path logs twice per job).
        self._job_log: Any = _log
        self._durations = {kind: metrics.JOB_DURATION.labels(kind=kind) for kind in self._kinds}
        self.ready = asyncio.Event()  # set while run() is claiming
        self.idle = asyncio.Event()  # set while caught up and waiting for work
        # Set when drain mode ends: pending jobs that wait on a backoff, and until when.
        self.drain_report: queue_jobs.Waiting | None = None
        self.claims = 0  # claim statements issued (tests check the NOTIFY debounce with it)
        self._samples = 0

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
            _log.info("shutdown_requested", in_flight=len(self._slots), grace_seconds=self._grace)
            self._stop.set()
        self._wake.set()
        self._slot_freed.set()

    async def run(self, *, drain: bool = False) -> None:
        """Claim and run jobs until stopped (or, with ``drain``, until the queue is idle)."""
        self._drain = drain
        self._job_log = _log.bind(owner=self.owner)
        background: list[asyncio.Task[None]] = []

        def spawn(name: str, coro: Coroutine[Any, Any, None]) -> None:
            background.append(asyncio.create_task(coro, name=f"kairo-worker-{name}"))

        await self._keeper.connect()
        finishing = asyncio.create_task(self._finisher.run(), name="kairo-worker-finisher")
        heartbeat = asyncio.create_task(
            self._keeper.run(self._heartbeat_stop), name="kairo-worker-heartbeat"
        )
        spawn("reaper", self._every("reap", self._reap_interval, self._reap_once))
        spawn("sampler", self._every("stats", self._stats_interval, self._sample_stats))
        if self._retention is not None:
            spawn("pruner", self._every("prune", self._prune_interval, self._prune_once))
        if self._listener is not None:
            spawn("listener", self._listener.run(self._stop))
        _log.info(
            "worker_started",
            owner=self.owner,
            kinds=self._kinds,
            concurrency=self._concurrency,
            lease_seconds=self._lease_seconds,
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
            self._stop.set()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._shutdown()
            self._finisher.close()
            await _bounded(finishing, self._cancel_timeout)
            self._heartbeat_stop.set()
            await _bounded(heartbeat, self._cancel_timeout)
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
                self.claims += 1
                leases = await queue_jobs.claim(
                    await self._claim_conn.get(),
                    owner=self.owner,
                    limit=free,
                    lease_seconds=self._lease_seconds,
                    kinds=self._kinds,
                )
            except Exception as exc:  # noqa: BLE001 - the loop must outlive database outages
                failures += 1
                await self._claim_conn.discard()
                await self._pause_after_error("claim", exc, failures)
                continue
            failures = 0
            if self._stop.is_set():
                # Stopped while the claim was in flight: hand the jobs straight back.
                await self._release(
                    [_Slot(lease, self._context(lease), claimed_at) for lease in leases]
                )
                return
            for lease in leases:
                self._start(lease, claimed_at)
            if len(leases) == free:
                continue
            if self._drain and not leases and not self._slots:
                try:
                    busy = await queue_jobs.has_ready_or_running(
                        await self._claim_conn.get(), kinds=self._kinds
                    )
                except Exception as exc:  # noqa: BLE001 - the loop must outlive database outages
                    failures += 1
                    await self._claim_conn.discard()
                    await self._pause_after_error("drain_check", exc, failures)
                    continue
                if not busy:
                    await self._report_drained()
                    return
            # Caught up: nothing more is ready. Sleep until a NOTIFY, a freed slot or the poll.
            self.idle.set()
            await self._wait_for_wake(self._poll_interval)
            self.idle.clear()

    async def _report_drained(self) -> None:
        """Drain mode's last word: what still waits on a backoff, and until when."""
        try:
            self.drain_report = await queue_jobs.waiting_on_backoff(self._engine, kinds=self._kinds)
        except Exception as exc:  # noqa: BLE001 - the report is best effort
            _log_loop_error("drain_report", exc, 1, 0.0)
            _log.info("queue_drained", owner=self.owner)
            return
        next_at = self.drain_report.next_at
        _log.info(
            "queue_drained",
            owner=self.owner,
            waiting_on_backoff=self.drain_report.jobs,
            next_available_at=None if next_at is None else next_at.isoformat(),
        )

    def _free_slots(self) -> int:
        # A job whose handler returned no longer takes a slot while its final write is
        # queued, so claiming overlaps the previous batch's completion; at most another
        # `concurrency` jobs may wait for their write (backpressure when writes are slow).
        return min(self._concurrency - self._running, 2 * self._concurrency - len(self._slots))

    async def _wait_for_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def _pause_after_error(self, loop: str, exc: Exception, failures: int) -> None:
        delay = finisher_module.write_backoff(failures, self._rng)
        _log_loop_error(loop, exc, failures, delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()

    # ---------------------------------------------------------------- running jobs

    def _context(self, lease: queue_jobs.Lease) -> JobContext:
        return JobContext(lease=lease, engine=self._engine, lease_lost=asyncio.Event())

    def _start(self, lease: queue_jobs.Lease, claimed_at: float) -> None:
        slot = _Slot(lease, self._context(lease), claimed_at)
        self._slots[lease.job_id] = slot
        self._running += 1
        slot.task = asyncio.create_task(
            self._run_job(slot), name=f"job-{lease.kind}-{lease.job_id}"
        )
        slot.task.add_done_callback(lambda task: self._job_done(slot, task))
        metrics.JOBS_IN_FLIGHT.inc()

    async def _run_job(self, slot: _Slot) -> None:
        lease = slot.lease
        with logs.bind(
            job_id=lease.job_id, brand_id=lease.brand_id, kind=lease.kind, attempt=lease.attempts
        ):
            log = self._job_log
            log.debug("job_started", max_attempts=lease.max_attempts)
            started = self._clock.monotonic()
            try:
                result: object = await self._handlers[lease.kind](slot.context)
                outcome = _as_outcome(result)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if slot.state is not _State.RUNNING or (task is not None and task.cancelling()):
                    log.info("job_interrupted", reason=slot.state.value)
                    raise
                # Nobody cancelled this task: the handler let a CancelledError of its own escape.
                outcome = Outcome(error=errors.HandlerError("the handler raised CancelledError"))
            except Exception as exc:  # noqa: BLE001 - a handler's failure is its job's, not ours
                outcome = Outcome(error=exc)
            duration = self._clock.monotonic() - started
            self._durations[lease.kind].observe(duration)
            if isinstance(outcome.error, errors.LeaseLostError):
                # A fenced write inside the handler found the lease gone: so is the job.
                self._lose(slot, "a fenced write in the handler found it lost", cancel=False)
            if slot.state is not _State.RUNNING:
                # Lost, or abandoned at shutdown while the handler ignored its cancellation:
                # nothing more is written for this attempt.
                return
            self._leave_running(slot, _State.FINISHING)
            written = self._finisher.submit(
                lease, evidence_status=outcome.evidence_status, error=outcome.error
            )
            # The write must land even if this task is cancelled while it is in flight.
            stored = await asyncio.shield(written)
            log.debug(
                "job_finished",
                ok=outcome.error is None,
                stored=stored,
                duration_seconds=round(duration, 4),
            )

    def _job_done(self, slot: _Slot, task: asyncio.Task[None]) -> None:
        if self._slots.get(slot.lease.job_id) is slot:
            del self._slots[slot.lease.job_id]
            metrics.JOBS_IN_FLIGHT.dec()
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error(
                "job_task_crashed", job_id=str(slot.lease.job_id), error=errors.describe(exc)
            )
        self._wake.set()
        self._slot_freed.set()

    def _leave_running(self, slot: _Slot, state: _State) -> None:
        slot.state = state
        self._running -= 1
        self._wake.set()

    def _lose(self, slot: _Slot, reason: str, cancel: bool = True) -> None:
        """The lease is gone: tell the handler, cancel its task, write nothing more."""
        if slot.state is not _State.RUNNING:
            return  # a finishing job's write is fenced; an abandoned one is being released
        self._leave_running(slot, _State.LOST)
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

    @property
    def lease_keeper(self) -> lease_keeper_module.LeaseKeeper:
        return self._keeper

    # ---------------------------------------------------------------- shutdown

    async def _shutdown(self) -> None:
        if self._slots and not self._skip_grace.is_set():
            _log.info("shutdown_grace", in_flight=len(self._slots), grace_seconds=self._grace)
            deadline = clock_module.Deadline.after(self._grace, self._clock)
            while self._slots and not self._skip_grace.is_set() and not deadline.expired():
                self._slot_freed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline.remaining()):
                        await self._slot_freed.wait()
        remaining = [s for s in self._slots.values() if s.state is _State.RUNNING]
        for slot in remaining:
            self._leave_running(slot, _State.ABANDONED)
            if slot.task is not None:
                slot.task.cancel()
        tasks = [s.task for s in self._slots.values() if s.task is not None]
        if remaining:
            # Handlers get a moment to unwind their own cleanup before the release.
            cancelled = [s.task for s in remaining if s.task is not None]
            await asyncio.wait(cancelled, timeout=self._cancel_timeout)
            await asyncio.shield(self._release(remaining))
        if tasks:
            # Jobs whose final write is in flight: let the finisher land it.
            await asyncio.wait(tasks, timeout=self._cancel_timeout)

    async def _release(self, slots: list[_Slot]) -> None:
        if not slots:
            return
        leases = [s.lease for s in slots]
        for failures in range(1, 4):
            try:
                released = await queue_jobs.release(self._engine, leases)
            except Exception as exc:  # noqa: BLE001 - the reaper will requeue them later
                _log_loop_error("release", exc, failures, 0.5)
                await asyncio.sleep(finisher_module.write_backoff(failures, self._rng))
                continue
            _log.info("jobs_released", released=released, cancelled=len(slots))
            return
        _log.error("release_failed", jobs=len(slots))

    # ---------------------------------------------------------------- periodic work

    async def _every(self, name: str, interval: float, work: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                await work()
                failures = 0
                pause = interval
            except Exception as exc:  # noqa: BLE001 - periodic work retries with backoff
                failures += 1
                pause = min(interval, finisher_module.write_backoff(failures, self._rng))
                _log_loop_error(name, exc, failures, pause)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._stop.wait()

    async def _reap_once(self) -> None:
        requeued, _failed = await queue_jobs.reap(
            self._engine,
            base_seconds=self._retry.base_seconds,
            cap_seconds=self._retry.cap_seconds,
        )
        if requeued:
            self._wake.set()

    async def _sample_stats(self) -> None:
        # Active counts every time (cheap); counts of finished jobs, which scan more of the
        # table, every FULL_STATS_EVERY samples.
        self._samples += 1
        if self._samples % FULL_STATS_EVERY == 1:
            sample = await queue_jobs.stats(self._engine)
            for status in statuses.JobStatus:
                metrics.QUEUE_DEPTH.labels(status=status.value).set(sample["counts"][status.value])
        else:
            sample = await queue_jobs.depth(self._engine)
            for status in (statuses.JobStatus.PENDING, statuses.JobStatus.RUNNING):
                metrics.QUEUE_DEPTH.labels(status=status.value).set(sample[status.value])
        metrics.OLDEST_READY_AGE.set(sample["oldest_ready_age_seconds"] or 0.0)

    async def _prune_once(self) -> None:
        assert self._retention is not None
        await queue_jobs.prune(self._engine, older_than=self._retention)


def _as_outcome(result: object) -> Outcome:
    if isinstance(result, Outcome):
        return result
    if result is None:
        return Outcome()
    return Outcome(
        error=errors.HandlerError(f"handler returned {type(result).__name__}, not an Outcome")
    )


def _log_loop_error(loop: str, exc: BaseException, failures: int, retry_in: float) -> None:
    kind, retryable, _ = errors.classify(exc)
    _log.warning(
        "worker_loop_error",
        loop=loop,
        error_kind=kind.value,
        retryable=retryable,
        error=errors.describe(exc),
        failures=failures,
        retry_in_seconds=round(retry_in, 3),
    )


async def _bounded(task: asyncio.Task[None], seconds: float) -> None:
    """Await a background task for at most ``seconds``, then cancel it."""
    done, _ = await asyncio.wait([task], timeout=seconds)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elif not task.cancelled() and (exc := task.exception()) is not None:
        _log.error("worker_task_crashed", task=task.get_name(), error=errors.describe(exc))
