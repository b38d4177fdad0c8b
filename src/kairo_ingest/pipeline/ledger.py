"""The run ledger service: every Apify run we started is followed to its end.

A run that has not ended is followed by the job attempt that holds it, otherwise by this
service, which runs in every worker process (like the reaper) and is safe with many
replicas: each round claims the due runs no job follows (``FOR UPDATE SKIP LOCKED``,
``db/ledger_queries.py``) and looks at each on Apify with the token of the account that started
it. An ended run has its end recorded (``pipeline/run_ends.py``) and its budget slot
freed in one transaction; an unwanted one is aborted (forced); a wanted one is looked at
again later; an intent whose start was never answered is reconciled or ends
START_FAILED. It wakes on ``NOTIFY kairo_ledger`` (``jobs cancel``), else every
``KAIRO_LEDGER_INTERVAL_SECONDS``; a failed look at one run is retried after
``ERROR_RETRY_SECONDS``, and a run still going is looked at again at most every
``MAX_CHECK_SECONDS``.

Who follows a run, what is unwanted, the figures and the limits: docs/ledger.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Awaitable, Callable

from kairo_ingest import errors, logs, metrics, tracing
from kairo_ingest.apify import models as apify_models
from kairo_ingest.apify import ports as apify_ports
from kairo_ingest.apify import reconcile
from kairo_ingest.db import ledger_queries, runs
from kairo_ingest.domain import charges, statuses
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.pipeline import budget as budget_module
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.pipeline import run_ends, tenants, tx

log = logs.get(__name__)

CHANNEL = ledger_queries.CHANNEL
BATCH = 100  # runs claimed per round
CONCURRENCY = 8  # runs looked at on Apify at once
HOLD_SECONDS = 120.0  # a claimed run is not claimed again meanwhile (a round's bound)
MAX_CHECK_SECONDS = 60.0  # a run that is just running is looked at at least this often
ABORTED_LOOK_SECONDS = 2  # the final look after an abort waits this long for the end
AFTER_ABORT_SECONDS = 1.0  # an aborted run that had not ended is looked at again this soon
ERROR_RETRY_SECONDS = 30.0
SETTLE_SECONDS = sum(reconcile.SETTLE_DELAYS_SECONDS)


class Ledger:
    """The maintenance unit: :meth:`run` until stopped; :meth:`round` is one pass."""

    def __init__(
        self,
        deps: deps_module.Deps,
        *,
        interval_seconds: float,
        batch: int = BATCH,
        concurrency: int = CONCURRENCY,
        settle_seconds: float = SETTLE_SECONDS,
        rng: random.Random | None = None,
    ) -> None:
        self._d = deps
        self.interval_seconds = interval_seconds
        self._batch = batch
        self._concurrency = concurrency
        self._settle_seconds = settle_seconds
        self._rng = rng or random.Random()
        self.wake = asyncio.Event()
        self.rounds = 0  # completed rounds (tests)

    def on_notify(self, _payload: str) -> None:
        """A LISTEN callback (``kairo_ledger``; "" after a reconnect): look now."""
        self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop``: at once again after a full batch, else after the interval
        or a wake-up; a failed round is retried with backoff (never longer than the
        interval)."""
        failures = 0
        while not stop.is_set():
            self.wake.clear()
            try:
                claimed = await self.round()
                failures = 0
                pause = 0.0 if claimed >= self._batch else self.interval_seconds
            except Exception as exc:  # noqa: BLE001 - the loop outlives database outages
                failures += 1
                pause = min(
                    self.interval_seconds, retry_rules.retry_delay_seconds(failures, self._rng)
                )
                kind, retryable, _ = errors.classify(exc)
                log.warning(
                    "ledger_round_failed",
                    error_kind=kind.value,
                    retryable=retryable,
                    error=errors.describe(exc),
                    failures=failures,
                )
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await _first(stop, self.wake)

    async def round(self) -> int:
        """Claim the due runs no job follows and take each one step on; how many."""
        d = self._d

        async def claim() -> list[ledger_queries.Owned]:
            async with d.engine.begin() as conn:
                return await ledger_queries.claim(
                    conn, limit=self._batch, hold_seconds=HOLD_SECONDS
                )

        owned = await tx.call(d.retry_policy, claim, operation="ledger_claim")
        bound = asyncio.Semaphore(self._concurrency)

        async def one(item: ledger_queries.Owned) -> None:
            async with bound:
                await self._one(item)

        if owned:
            # A trace of its own per round with runs (never under whatever was current), one
            # span per run under it, and that run's Apify requests under the run's span.
            with tracing.span(
                "ledger round", {"kairo.ledger.runs": len(owned)}, context=tracing.parent(None)
            ):
                await asyncio.gather(*(one(item) for item in owned))
        await self._sample()
        self.rounds += 1
        return len(owned)

    async def settle(self, bound_seconds: float) -> int:
        """Rounds until no run that no job wants is left to abort or record, or the bound
        passes (``run --drain`` calls it before it exits); how many are left."""
        d = self._d
        deadline = asyncio.get_running_loop().time() + bound_seconds
        while True:

            async def left() -> int:
                async with d.engine.connect() as conn:
                    return await ledger_queries.unwanted_left(conn)

            remaining = await tx.call(d.retry_policy, left, operation="ledger_left")
            if remaining == 0 or asyncio.get_running_loop().time() >= deadline:
                return remaining
            await self.round()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(AFTER_ABORT_SECONDS, bound_seconds)):
                    await self.wake.wait()

    # ------------------------------------------------------------------ one run

    async def _one(self, item: ledger_queries.Owned) -> None:
        run = item.run
        with (
            logs.bind(run_id=str(run.id), apify_run_id=run.apify_run_id, account=run.account),
            tracing.span(
                "ledger run",
                {
                    "kairo.run.id": str(run.id),
                    "apify.run_id": run.apify_run_id,
                    "kairo.account": run.account,
                },
            ) as run_span,
        ):
            try:
                api, tenant = await self._client(run.account)
                metrics.LEDGER_RUNS_LOOKED_AT.labels(run.account).inc()
                if run.apify_run_id is None:
                    await self._intent(item, api, tenant)
                else:
                    await self._started(item, api, tenant, None)
            except Exception as exc:  # noqa: BLE001 - one run's trouble is never another's
                tracing.fail(run_span, exc)
                log.warning(
                    "ledger_run_look_failed",
                    error_kind=errors.classify(exc)[0].value,
                    error=errors.describe(exc),
                )
                await self._write(
                    ledger_queries.note, run.id, status=None, next_check_seconds=ERROR_RETRY_SECONDS
                )

    async def _client(self, account: str) -> tuple[apify_ports.ApifyRuns, tenants.Tenant | None]:
        """The client with the token of the account that started the run."""
        if self._d.tenants is None:
            return self._d.apify, None
        tenant = await self._d.tenants.resolve(account)
        return tenant.api, tenant

    async def _started(
        self,
        item: ledger_queries.Owned,
        api: apify_ports.ApifyRuns,
        tenant: tenants.Tenant | None,
        info: apify_models.RunInfo | None,
    ) -> None:
        run = item.run
        assert run.apify_run_id is not None
        if info is None:
            info = await api.get_run(run.apify_run_id)
        if info.terminal:
            await self._record(run, info, tenant)
            return
        aborting = item.unwanted is not None or run.abort_requested_at is not None
        if not aborting:
            await self._write(
                ledger_queries.note,
                run.id,
                status=info.status,
                next_check_seconds=self._next_check(item.age_seconds),
            )
            return
        if info.status not in statuses.APIFY_ABORTABLE:
            # ABORTING already (our abort, or someone's): look again soon for its end.
            await self._write(
                ledger_queries.note,
                run.id,
                status=info.status,
                next_check_seconds=AFTER_ABORT_SECONDS,
            )
            return
        log.info("ledger_run_aborting", why=item.unwanted or "aborted earlier, still going")
        aborted = await api.abort_run(run.apify_run_id, gracefully=False)
        metrics.LEDGER_RUNS_ABORTED.labels(run.account).inc()
        looked = await api.get_run(run.apify_run_id, ABORTED_LOOK_SECONDS)
        info = looked if looked.terminal or not aborted.terminal else aborted
        if info.terminal:
            await self._record(run, info, tenant, aborted=True)
            return
        await self._write(
            ledger_queries.abort_sent,
            run.id,
            status=info.status,
            reason=charges.PartialReason.ABORTED.value,
            next_check_seconds=AFTER_ABORT_SECONDS,
        )

    async def _record(
        self,
        run: runs.Run,
        info: apify_models.RunInfo,
        tenant: tenants.Tenant | None,
        *,
        aborted: bool = False,
    ) -> None:
        """Record the end and free the run's slot, in one transaction (unfenced: the end
        is Apify's, and the first end recorded wins)."""
        aborted_for = run.partial_reason if run.abort_requested_at is not None else None
        if aborted and aborted_for is None:
            aborted_for = charges.PartialReason.ABORTED.value
        end = run_ends.end_of(
            info, ended_by=run_ends.EndedBy.LEDGER, aborted_for=aborted_for, aborted=aborted
        )
        engine = self._d.engine
        budget = self._d.budget

        async def unit() -> tuple[runs.Run, bool]:
            async with engine.begin() as conn:
                if budget is not None and tenant is not None:
                    await budget_module.free_ended(conn, run.id, tenant)
                return await runs.record_end(conn, run.id, end)

        ended, wrote = await tx.call(self._d.retry_policy, unit, operation="ledger_record_end")
        if wrote:
            run_ends.counted(ended)

    async def _intent(
        self,
        item: ledger_queries.Owned,
        api: apify_ports.ApifyRuns,
        tenant: tenants.Tenant | None,
    ) -> None:
        """A STARTING intent that no job follows."""
        run = item.run
        if run.sent_at is None:
            if item.unwanted is None:  # its job will start it
                await self._write(
                    ledger_queries.note, run.id, status=None, next_check_seconds=MAX_CHECK_SECONDS
                )
                return
            await self._start_failed(
                run,
                tenant,
                errors.ErrorKind.CANCELLED,
                f"never sent to Apify, and no job wants it: {item.unwanted}",
            )
            return

        async def owned_ids() -> set[str]:
            async with self._d.engine.connect() as conn:
                return await runs.owned_apify_run_ids(
                    conn,
                    actor_id=run.actor_id,
                    since=run.intent_at - reconcile.DEFAULT_CLOCK_SLACK,
                )

        exclude = await tx.call(self._d.retry_policy, owned_ids, operation="owned_apify_runs")
        info = await reconcile.adopt_existing(
            api, run.actor_id, run.input, run.intent_at, exclude_run_ids=exclude
        )
        since_sent = item.since_sent_seconds or 0.0
        if info is None:
            if since_sent >= self._settle_seconds:
                await self._start_failed(
                    run,
                    tenant,
                    errors.ErrorKind.NOT_FOUND,
                    f"no Apify run holds this intent's input {since_sent:.0f}s after its "
                    "start was sent",
                )
            else:
                await self._write(
                    ledger_queries.note,
                    run.id,
                    status=None,
                    next_check_seconds=max(1.0, min(self._settle_seconds - since_sent, 15.0)),
                )
            return

        async def bind() -> bool:
            async with self._d.engine.begin() as conn:
                return await ledger_queries.bind(
                    conn,
                    run.id,
                    apify_run_id=info.id,
                    dataset_id=info.default_dataset_id,
                    status=run.status if info.terminal else info.status,
                    started_at=info.started_at,
                )

        try:
            bound = await tx.call(self._d.retry_policy, bind, operation="ledger_bind")
        except errors.DatabaseConstraintError:
            # Another intent recorded that run first: look again next round, excluding it.
            log.info("ledger_run_already_recorded", found=info.id)
            await self._write(
                ledger_queries.note, run.id, status=None, next_check_seconds=AFTER_ABORT_SECONDS
            )
            return
        if not bound:
            return  # a job took the intent up meanwhile: it reconciles for itself
        log.info("ledger_run_adopted", found=info.id, status=info.status)
        started = dataclasses.replace(run, apify_run_id=info.id)
        adopted = ledger_queries.Owned(started, item.unwanted, item.age_seconds, since_sent)
        await self._started(adopted, api, tenant, info)

    async def _start_failed(
        self,
        run: runs.Run,
        tenant: tenants.Tenant | None,
        kind: errors.ErrorKind,
        summary: str,
    ) -> None:
        engine = self._d.engine
        budget = self._d.budget

        async def unit() -> bool:
            async with engine.begin() as conn:
                if budget is not None and tenant is not None:
                    await budget_module.free_ended(conn, run.id, tenant)
                return await ledger_queries.start_failed(
                    conn, run.id, error_kind=kind.value, error_summary=summary
                )

        if await tx.call(self._d.retry_policy, unit, operation="ledger_start_failed"):
            log.info("ledger_intent_start_failed", error_kind=kind.value, error=summary)

    # ------------------------------------------------------------------ plumbing

    def _next_check(self, age_seconds: float) -> float:
        return max(self.interval_seconds, min(MAX_CHECK_SECONDS, age_seconds / 4))

    async def _write(self, fn: Callable[..., Awaitable[None]], *args: object, **kw: object) -> None:
        engine = self._d.engine

        async def unit() -> None:
            async with engine.begin() as conn:
                await fn(conn, *args, **kw)

        await tx.call(self._d.retry_policy, unit, operation=f"ledger_{fn.__name__}")

    async def _sample(self) -> None:
        async with self._d.engine.connect() as conn:
            counts = await ledger_queries.unfollowed_per_account(conn)
        for account, value in counts.items():
            metrics.LEDGER_UNFOLLOWED.labels(account).set(value)
        for labels in _seen_accounts() - set(counts):
            metrics.LEDGER_UNFOLLOWED.labels(labels).set(0)


def _seen_accounts() -> set[str]:
    """The accounts the unfollowed gauge has a value for (set to 0 when they have none)."""
    return {
        sample.labels["account"]
        for metric in metrics.LEDGER_UNFOLLOWED.collect()
        for sample in metric.samples
    }


async def _first(stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Wait until ``stop`` or ``wake`` is set."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
