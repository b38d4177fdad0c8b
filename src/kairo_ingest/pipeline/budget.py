"""Taking a run slot from the account's shared budget before a start, and daily caps.

:meth:`Budget.slot` wraps the start and the wait of a run. It registers the run intent
with the account's budget (``db/run_slots.py``) and returns once a slot is granted; while
the account is full the source waits *inside* its job, so no attempt is spent and its
lease keeps beating. It is woken by ``NOTIFY`` when a slot is granted to it (the
service feeds :meth:`Budget.on_notify` from a LISTEN connection), and it re-checks on a
bounded poll (``poll_seconds``) in case a notification was lost or LISTEN is off
(behind a transaction-mode pooler it only polls). A poll first reads the account's rows
without the lock (``run_slots.look``) and takes the lock only when a pass could change
something: its row granted, a dead holder to sweep, or room for a waiter. The slot is
released when the run has ended (or the start failed), and the freed slot is granted to
the next waiter in the same transaction. A run that was sent and has not ended when its
job lets go (a cancel, a lost lease, a wait that failed) keeps its slot until the run
ledger records its end (``db/run_slots.py``).

A slot counts :attr:`Budget.memory_mbytes`, which is also the memory every run is started
with (``source_run``). When the run object reports another memory (a run adopted or taken
over after a crash, started by an older release without one), :meth:`Budget.resize`
counts that instead.

Daily caps are checked when the slot is requested and again when it is granted: with the
account's (or the brand's own) spend in the current window at or past its cap, no run
starts and :class:`~kairo_ingest.errors.BudgetExceededError` (snooze until the window
resets) is raised. Runs already in flight finish; their cost counts when they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import decimal
import functools
import uuid
from collections.abc import AsyncIterator

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, metrics
from kairo_ingest.db import costs, run_slots, runs
from kairo_ingest.pipeline import tenants, tx
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)

DAY_SECONDS = 86_400


@dataclasses.dataclass(frozen=True, slots=True)
class Ask:
    """One run's request for a slot."""

    run: runs.Run
    tenant: tenants.Tenant
    lease: queue_jobs.Lease
    force: bool = False
    """A run already in flight on Apify (a resumed wait): it takes its slot at once."""


class Budget:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        *,
        memory_mbytes: int = 1024,
        poll_seconds: float = 5.0,
        window_seconds: int = DAY_SECONDS,
        policy: tx.Policy | None = None,
    ) -> None:
        self._engine = engine
        self.memory_mbytes = memory_mbytes
        self.poll_seconds = poll_seconds
        self.window_seconds = window_seconds
        self._policy = policy or tx.DEFAULT
        self._waiters: dict[uuid.UUID, asyncio.Event] = {}
        self.wakeups = 0  # notifications that woke a waiter here (for tests)
        self.polls_spared = 0  # polls that found nothing to do and took no lock (for tests)

    def on_notify(self, payload: str) -> None:
        """A LISTEN callback: the granted run ids, comma-separated ("" after a reconnect:
        anything sent meanwhile is lost, so every waiter looks again)."""
        if not payload:
            self.wake_all()
            return
        for part in payload.split(","):
            with contextlib.suppress(ValueError):
                event = self._waiters.get(uuid.UUID(part))
                if event is not None:
                    self.wakeups += 1
                    event.set()

    def wake_all(self) -> None:
        """After a (re)connect of LISTEN: notifications sent meanwhile are gone."""
        for event in self._waiters.values():
            event.set()

    @contextlib.asynccontextmanager
    async def slot(self, ask: Ask) -> AsyncIterator[None]:
        claim = run_slots.Claim(
            run_id=ask.run.id,
            account=ask.tenant.account,
            brand_id=ask.run.brand_id,
            job_id=ask.lease.job_id,
            lease_token=ask.lease.token,
            memory_mbytes=self.memory_mbytes,
        )
        try:
            await self._acquire(ask, claim)
            yield
        finally:
            await asyncio.shield(self._release(ask, claim))

    async def _acquire(self, ask: Ask, claim: run_slots.Claim) -> None:
        event = self._waiters.setdefault(claim.run_id, asyncio.Event())
        waited = False
        try:
            while True:
                polled = waited and not event.is_set()  # the wait ended on the poll's timeout
                event.clear()
                if polled and not await self._worth_a_pass(ask, claim):
                    self.polls_spared += 1
                elif await tx.write(
                    self._engine,
                    ask.lease,
                    functools.partial(self._try, ask=ask, claim=claim),
                    policy=self._policy,
                    operation="take_run_slot",
                ):
                    if waited:
                        log.info("run_slot_granted", account=claim.account)
                    return
                if not waited:
                    waited = True
                    metrics.RUN_SLOT_WAITS.labels(claim.account).inc()
                    log.info("run_slot_waiting", account=claim.account)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await event.wait()
        finally:
            self._waiters.pop(claim.run_id, None)

    async def _worth_a_pass(self, ask: Ask, claim: run_slots.Claim) -> bool:
        """After a poll's timeout (no notification): whether a pass under the account's lock
        could change anything, read without the lock. While an account is full, most polls
        find nothing to do, and taking the lock for each held up the hand-overs that do."""
        limits = ask.tenant.limits

        async def read(conn: sa_async.AsyncConnection) -> run_slots.Look:
            return await run_slots.look(
                conn,
                claim,
                max_runs=limits.max_concurrent_runs,
                max_memory_mbytes=limits.max_memory_mbytes,
            )

        seen = await tx.read(self._engine, read, policy=self._policy, operation="look_run_slot")
        return seen.needs_pass

    async def _try(
        self, conn: sa_async.AsyncConnection, *, ask: Ask, claim: run_slots.Claim
    ) -> bool:
        limits = ask.tenant.limits
        await run_slots.lock(conn, claim.account)
        await run_slots.sweep(conn, claim.account)
        if not ask.force:
            await self._check_caps(conn, ask)
        mine = await run_slots.register(conn, claim, granted=ask.force)
        others = await run_slots.grant(
            conn,
            claim.account,
            max_runs=limits.max_concurrent_runs,
            max_memory_mbytes=limits.max_memory_mbytes,
        )
        mine = mine or claim.run_id in others
        await run_slots.notify(conn, [r for r in others if r != claim.run_id])
        return mine

    async def _check_caps(self, conn: sa_async.AsyncConnection, ask: Ask) -> None:
        account_cap = ask.tenant.limits.daily_cap_usd
        if account_cap is not None:
            spent, left = await costs.spent_in_window(
                conn, window_seconds=self.window_seconds, account=ask.tenant.account
            )
            # As of this check, for the alert on spend against the cap.
            metrics.APIFY_DAILY_CAP_USD.labels(ask.tenant.account).set(float(account_cap))
            metrics.APIFY_DAILY_SPENT_USD.labels(ask.tenant.account).set(float(spent))
            if spent >= account_cap:
                raise self._exceeded(f"account {ask.tenant.account!r}", account_cap, spent, left)
        brand_cap = await costs.brand_cap(conn, ask.run.brand_id)
        if brand_cap is not None:
            spent, left = await costs.spent_in_window(
                conn, window_seconds=self.window_seconds, brand_id=ask.run.brand_id
            )
            if spent >= brand_cap:
                raise self._exceeded(f"brand {ask.run.brand_id}", brand_cap, spent, left)

    def _exceeded(
        self, whose: str, cap: decimal.Decimal, spent: decimal.Decimal, left: float
    ) -> errors.BudgetExceededError:
        window = "UTC day" if self.window_seconds == DAY_SECONDS else f"{self.window_seconds}s"
        return errors.BudgetExceededError(
            f"daily cap of ${float(cap):g} for {whose} reached: ${float(spent):.4f} spent "
            f"this {window}; no new run starts until it resets in {max(left, 0):.0f}s",
            retry_after_seconds=max(left, 1.0),
        )

    async def resize(self, ask: Ask, memory_mbytes: int) -> None:
        """Count the run's slot at the memory Apify reports for the run, if not ours.

        Every start asks for :attr:`memory_mbytes`, but an adopted or taken-over run may
        have been started with another (by an older release, or by hand, and Apify then
        gives it the actor's default), and the account's memory sum must be what Apify
        counts. Fenced: only
        while the job holds its lease. A smaller memory frees room, granted on to the
        waiters that now fit in the same transaction; a larger one holds the account's
        next grants back until it fits again. A database failure is logged, never the
        run's: the run is in flight on Apify either way.
        """
        if memory_mbytes == self.memory_mbytes:
            return
        limits = ask.tenant.limits

        async def unit(conn: sa_async.AsyncConnection) -> bool:
            await run_slots.lock(conn, ask.tenant.account)
            if not await run_slots.resize(conn, ask.run.id, ask.lease.token, memory_mbytes):
                return False
            granted = await run_slots.grant(
                conn,
                ask.tenant.account,
                max_runs=limits.max_concurrent_runs,
                max_memory_mbytes=limits.max_memory_mbytes,
            )
            await run_slots.notify(conn, granted)
            return True

        try:
            resized = await tx.write(
                self._engine, ask.lease, unit, policy=self._policy, operation="resize_run_slot"
            )
        except errors.DatabaseError as exc:
            log.warning("run_slot_resize_failed", error=errors.describe(exc))
            return
        if resized:
            log.info(
                "run_slot_resized",
                account=ask.tenant.account,
                counted_mbytes=self.memory_mbytes,
                run_mbytes=memory_mbytes,
            )

    async def _release(self, ask: Ask, claim: run_slots.Claim) -> None:
        """Give the slot (or our place in the queue) back and grant it on, in one transaction.

        Not fenced: a lost lease already made the row dead; ``remove`` only deletes the
        row while it still carries our lease token. The slot of a run that was sent and has
        not ended stays: the run still occupies the account, and the run ledger frees the
        slot when it records the end (``free_ended``).
        """
        limits = ask.tenant.limits

        async def unit() -> None:
            async with self._engine.begin() as conn:
                await run_slots.lock(conn, claim.account)
                if not await run_slots.remove(conn, claim.run_id, claim.lease_token):
                    return
                granted = await run_slots.grant(
                    conn,
                    claim.account,
                    max_runs=limits.max_concurrent_runs,
                    max_memory_mbytes=limits.max_memory_mbytes,
                )
                await run_slots.notify(conn, granted)

        try:
            await tx.call(self._policy, unit, operation="release_run_slot")
        except errors.DatabaseError as exc:
            # The row dies with the lease anyway (db/run_slots.py): never fail the run for it.
            log.warning("run_slot_release_failed", error=errors.describe(exc))


async def free_ended(
    conn: sa_async.AsyncConnection, run_id: uuid.UUID, tenant: tenants.Tenant
) -> None:
    """Inside the run ledger's transaction that records a run's end: delete the run's slot,
    whoever holds it, and grant the room to the next waiters (woken at commit)."""
    limits = tenant.limits
    await run_slots.lock(conn, tenant.account)
    if await run_slots.forget(conn, run_id) is None:
        return
    granted = await run_slots.grant(
        conn,
        tenant.account,
        max_runs=limits.max_concurrent_runs,
        max_memory_mbytes=limits.max_memory_mbytes,
    )
    await run_slots.notify(conn, granted)
