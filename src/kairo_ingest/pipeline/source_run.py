"""One source through one Apify run: intent, start or adopt, wait, fetch, normalize.

The run row is written *before* Apify hears of the run (status STARTING, with the
exact input and the intent's time), so a crash at any point can be resumed without
paying twice:

* no row, or the last attempt ended badly -> a new intent, then start;
* STARTING -> reconcile: adopt the Apify run whose INPUT matches, start only if none;
* READY / RUNNING / ... -> wait on the same run again;
* SUCCEEDED without stored items -> fetch (idempotent inserts);
* SUCCEEDED with stored items -> nothing to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock, errors, logs, metrics
from kairo_ingest.apify import models as apify_models
from kairo_ingest.apify import reconcile
from kairo_ingest.db import runs, sources, tables
from kairo_ingest.domain import evidence, registry, statuses
from kairo_ingest.pipeline import budget as budget_module
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.pipeline import store, tx
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)

_RESTART_AFTER = frozenset(
    {
        statuses.RunStatus.START_FAILED,
        statuses.RunStatus.FAILED,
        statuses.RunStatus.TIMED_OUT,
        statuses.RunStatus.ABORTED,
    }
)


def facts(run: runs.Run) -> evidence.RunFacts:
    return evidence.RunFacts(
        run_id=str(run.id),
        apify_run_id=run.apify_run_id,
        apify_status=run.status,
        dataset_id=run.dataset_id,
        raw_items=run.raw_item_count or 0,
        normalized_created=run.normalized_created or 0,
        normalized_updated=run.normalized_updated or 0,
        items_skipped=run.items_skipped or 0,
        usage_total_usd=None if run.usage_total_usd is None else float(run.usage_total_usd),
    )


class SourceRunError(Exception):
    """Carries the run a failure happened on, so the evidence entry can name it."""

    def __init__(self, cause: BaseException, run: runs.Run | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.run = run


async def _write(
    d: deps_module.Deps, lease: queue_jobs.Lease, run_id: uuid.UUID, **values: Any
) -> runs.Run:
    return await tx.write(
        d.engine,
        lease,
        functools.partial(runs.update, run_id=run_id, **values),
        policy=d.retry_policy,
        operation="update_run",
    )


async def _record_started(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run, info: apify_models.RunInfo
) -> runs.Run:
    with logs.bind(apify_run_id=info.id):
        log.info("apify_run_recorded", actor_id=run.actor_id, status=info.status)
    try:
        return await _write(
            d,
            lease,
            run.id,
            apify_run_id=info.id,
            dataset_id=info.default_dataset_id,
            status=info.status,
            started_at=info.started_at or sa.func.now(),
        )
    except errors.DatabaseConstraintError as exc:
        # Two intents with identical input adopted the same run at the same moment; the
        # other one recorded it first. Stay STARTING: the next attempt reconciles again and
        # excludes that run.
        raise errors.ApifyStartUnknownError(
            f"Apify run {info.id} is already recorded for another intent"
        ) from exc


async def _start(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run, *, resuming: bool
) -> runs.Run:
    info: apify_models.RunInfo | None = None

    async def owned_and_age(conn: sa_async.AsyncConnection) -> tuple[set[str], float]:
        owned = await runs.owned_apify_run_ids(
            conn, actor_id=run.actor_id, since=run.intent_at - reconcile.DEFAULT_CLOCK_SLACK
        )
        return owned, (await runs.db_now(conn) - run.intent_at).total_seconds()

    owned, age = await tx.read(
        d.engine, owned_and_age, policy=d.retry_policy, operation="owned_apify_runs"
    )
    try:
        if resuming:
            info = await reconcile.adopt_settled(
                d.apify,
                run.actor_id,
                run.input,
                intent_at=run.intent_at,
                exclude_run_ids=owned,
                settle_delays_seconds=reconcile.settle_left(age),
            )
            if info is not None:
                log.info("apify_run_adopted", apify_run_id=info.id)
        if info is None:
            info = await reconcile.start_or_adopt(
                d.apify,
                run.actor_id,
                run.input,
                intent_at=run.intent_at,
                exclude_run_ids=owned,
                timeout_secs=int(d.run_deadline_seconds),
                memory_mbytes=d.run_memory_mbytes,
                max_items=run.item_cap,
                max_total_charge_usd=d.run_max_charge_usd,
            )
    except errors.ApifyError as exc:
        if not reconcile.is_definite_refusal(exc):
            raise  # a run may exist: stay STARTING, reconcile next time
        await _write(
            d,
            lease,
            run.id,
            status=statuses.RunStatus.START_FAILED,
            finished_at=sa.func.now(),
            error_kind=exc.kind.value,
            error_summary=exc.message,
        )
        raise
    run = await _record_started(d, lease, run, info)
    await _count_memory(d, lease, run, info)
    return run


async def _count_memory(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run, info: apify_models.RunInfo
) -> None:
    """Make the run's slot count the memory Apify gave the run (started, adopted or taken
    over)."""
    if d.budget is None or d.tenant is None or info.memory_mbytes is None:
        return
    await d.budget.resize(budget_module.Ask(run, d.tenant, lease), info.memory_mbytes)


async def _count_taken_over_memory(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run
) -> None:
    """A run taken over in flight was started by an earlier holder, perhaps by an older
    release that sent no memory: look at the run once and count the memory Apify gave it.
    If Apify cannot say now, the slot keeps our figure; the wait goes on either way."""
    if d.budget is None or d.tenant is None or run.apify_run_id is None:
        return
    try:
        info = await d.apify.get_run(run.apify_run_id)
    except errors.ApifyError as exc:
        log.warning("apify_run_memory_unknown", error=errors.describe(exc))
        return
    await _count_memory(d, lease, run, info)


async def _wait(d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run) -> runs.Run:
    if run.apify_run_id is None:
        raise SourceRunError(
            errors.HandlerError(f"run {run.id} is {run.status} without an Apify run id"), run
        )
    elapsed = await tx.read(
        d.engine,
        functools.partial(runs.seconds_since_start, run_id=run.id),
        policy=d.retry_policy,
        operation="seconds_since_start",
    )
    deadline = clock.Deadline.after(max(0.0, d.run_deadline_seconds - elapsed), d.clock)
    try:
        info = await d.apify.wait_or_abort(run.apify_run_id, deadline)
    except errors.ApifyTimeoutError as exc:
        metrics.APIFY_RUNS.labels(statuses.RunStatus.TIMED_OUT).inc()
        run = await _write(
            d,
            lease,
            run.id,
            status=statuses.RunStatus.TIMED_OUT,
            finished_at=sa.func.now(),
            error_kind=errors.ErrorKind.TIMEOUT.value,
            error_summary=exc.message,
        )
        raise SourceRunError(exc, run) from exc
    metrics.APIFY_RUNS.labels(info.status).inc()
    values: dict[str, Any] = {
        "status": info.status,
        "finished_at": info.finished_at or sa.func.now(),
        "dataset_id": info.default_dataset_id or run.dataset_id,
    }
    if info.usage_total_usd is not None:
        # The final run object's cost: what daily caps and `costs` count.
        values.update(usage_total_usd=info.usage_total_usd, usage=info.usage)
        metrics.APIFY_SPENT_USD.labels(run.account or "default", run.actor_id).inc(
            info.usage_total_usd
        )
    if not info.succeeded:
        failure = errors.ApifyRunFailedError(
            f"Apify run {info.id} ended {info.status}"
            + (f": {info.status_message}" if info.status_message else "")
        )
        values.update(error_kind=failure.kind.value, error_summary=failure.message)
        run = await _write(d, lease, run.id, **values)
        raise SourceRunError(failure, run)
    return await _write(d, lease, run.id, **values)


async def _dataset_of(d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run) -> runs.Run:
    """A SUCCEEDED run recorded without its dataset id: ask Apify once more, else fail it.

    Apify's run object always names ``defaultDatasetId``; a proxy or a truncated answer
    may not. This is a classified, retryable failure of this source, never an assert.
    """
    info = await d.apify.get_run(run.apify_run_id) if run.apify_run_id is not None else None
    if info is None or info.default_dataset_id is None:
        raise SourceRunError(
            errors.ApifyTransientError(
                f"Apify run {run.apify_run_id} ended {run.status} without a default dataset id"
            ),
            run,
        )
    return await _write(d, lease, run.id, dataset_id=info.default_dataset_id)


async def _fetch(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run, source: sources.Source
) -> runs.Run:
    if run.dataset_id is None:
        run = await _dataset_of(d, lease, run)
    assert run.dataset_id is not None  # _dataset_of raised otherwise; narrows the type
    cap = run.item_cap or registry.cap_for(source.platform, source.capability, d.env)
    store_page = functools.partial(
        store.store_page,
        d.engine,
        lease,
        run,
        platform=source.platform,
        capability=source.capability,
        policy=d.retry_policy,
    )
    page: list[tuple[int, Any]] = []
    async for index, item in d.apify.iter_dataset_items(
        run.dataset_id, limit=cap, page_size=d.page_size
    ):
        page.append((index, item))
        if len(page) >= d.page_size:
            await store_page(page=page)
            page = []
    if page:
        await store_page(page=page)
    return await _write(
        d,
        lease,
        run.id,
        raw_stored_at=sa.func.now(),
        normalized_at=sa.func.now(),
        raw_item_count=sa.func.coalesce(tables.apify_runs.c.raw_item_count, 0),
    )


async def run(
    d: deps_module.Deps,
    lease: queue_jobs.Lease,
    source: sources.Source,
    spec: registry.ActorSpec,
    *,
    reason: str,
    run: runs.Run | None,
) -> evidence.Entry:
    """Take a source through its run for this job, resuming whatever a crash left behind.

    ``run`` is the job's latest run for the source (``runs.latest_for``), or None.
    """
    try:
        account = source.account or "default"
        if d.tenants is not None:
            tenant = await d.tenants.resolve(source.account)
            # Every Apify call of this source goes out with its own account's token.
            d = dataclasses.replace(d, apify=tenant.api, tenant=tenant)
            account = tenant.account
        async with d.run_slots:
            run = await _advance(d, lease, source, spec, run, account=account)
    except SourceRunError as exc:
        return _failed(source, reason, exc.cause, exc.run)
    except errors.LeaseLostError:
        raise
    except Exception as exc:  # noqa: BLE001 - one source's failure is its entry, never its siblings'
        # Any exception, a KairoError or not (a KeyError, a RecursionError): this source's
        # `failed` entry (kind `internal` unless the error says better). Cancellation and a
        # lost lease are BaseException / re-raised above: they end the whole job.
        latest = await tx.read(
            d.engine,
            functools.partial(runs.latest_for, job_id=lease.job_id, source_id=source.id),
            policy=d.retry_policy,
            operation="latest_run",
        )
        return _failed(source, reason, exc, latest)
    return evidence.Entry(
        statuses.EvidenceBucket.REFRESHED,
        str(source.id),
        source.platform,
        source.capability,
        reason,
        run=facts(run),
    )


async def _create_intent(
    conn: sa_async.AsyncConnection,
    *,
    lease: queue_jobs.Lease,
    source: sources.Source,
    actor_id: str,
    run_input: dict[str, Any],
    cap: int,
    attempt: int,
    account: str,
) -> runs.Run:
    """A new intent, or the one a retried transaction already committed (its COMMIT's
    answer lost): the same attempt, still STARTING, never sent to Apify (Apify hears of an
    intent only after this transaction returned), so it is safe to take over."""
    latest = await runs.latest_for(conn, job_id=lease.job_id, source_id=source.id)
    if (
        latest is not None
        and latest.attempt == attempt
        and latest.status == statuses.RunStatus.STARTING
        and latest.apify_run_id is None
    ):
        return latest
    return await runs.create_intent(
        conn,
        job_id=lease.job_id,
        source_id=source.id,
        brand_id=source.brand_id,
        actor_id=actor_id,
        run_input=run_input,
        item_cap=cap,
        attempt=attempt,
        account=account,
        job_attempt=lease.attempt_number,
    )


async def _advance(
    d: deps_module.Deps,
    lease: queue_jobs.Lease,
    source: sources.Source,
    spec: registry.ActorSpec,
    run: runs.Run | None,
    *,
    account: str,
) -> runs.Run:
    if run is None or run.status in _RESTART_AFTER:
        cap = registry.cap_for(source.platform, source.capability, d.env)
        run = await tx.write(
            d.engine,
            lease,
            functools.partial(
                _create_intent,
                lease=lease,
                source=source,
                actor_id=spec.actor_id,
                run_input=spec.build_input(source.identifier, source.settings, cap),
                cap=cap,
                attempt=(run.attempt + 1) if run is not None else 1,
                account=account,
            ),
            policy=d.retry_policy,
            operation="create_intent",
        )
        log.info("apify_run_intent", run_id=str(run.id), actor_id=run.actor_id)
        async with _slot(d, lease, run, force=False):
            run = await _start(d, lease, run, resuming=False)
            run = await _until_ended(d, lease, run)
    elif run.status == statuses.RunStatus.STARTING:
        log.info("apify_run_intent_resumed", run_id=str(run.id))
        async with _slot(d, lease, run, force=False):
            run = await _start(d, lease, run, resuming=True)
            run = await _until_ended(d, lease, run)
    elif not statuses.is_terminal(run.status):
        # In flight on Apify already (a takeover): it occupies the account; take its slot.
        async with _slot(d, lease, run, force=True):
            await _count_taken_over_memory(d, lease, run)
            run = await _until_ended(d, lease, run)
    with logs.bind(apify_run_id=run.apify_run_id):
        if run.status != statuses.RunStatus.SUCCEEDED:
            raise SourceRunError(
                errors.ApifyRunFailedError(f"Apify run {run.apify_run_id} ended {run.status}"), run
            )
        if run.raw_stored_at is None:
            run = await _fetch(d, lease, run, source)
            log.info(
                "apify_run_ingested",
                raw_items=run.raw_item_count,
                created=run.normalized_created,
                updated=run.normalized_updated,
                skipped=run.items_skipped,
            )
    return run


async def _until_ended(d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run) -> runs.Run:
    with logs.bind(apify_run_id=run.apify_run_id):
        if not statuses.is_terminal(run.status):
            run = await _wait(d, lease, run)
    return run


@contextlib.asynccontextmanager
async def _slot(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run, *, force: bool
) -> AsyncIterator[None]:
    """A slot of the account's shared budget around a run's start and wait (pipeline/budget).

    A daily cap reached before the start marks the intent START_FAILED with kind
    ``budget_exceeded`` (the next attempt makes a new intent) and fails the source with a
    snoozing error: the job waits for the cap's window without spending an attempt.
    """
    if d.budget is None or d.tenant is None:
        yield
        return
    try:
        async with d.budget.slot(budget_module.Ask(run, d.tenant, lease, force=force)):
            yield
    except errors.BudgetExceededError as exc:
        if run.apify_run_id is not None or run.status != statuses.RunStatus.STARTING:
            raise
        failed = await _write(
            d,
            lease,
            run.id,
            status=statuses.RunStatus.START_FAILED,
            finished_at=sa.func.now(),
            error_kind=exc.kind.value,
            error_summary=exc.message,
        )
        raise SourceRunError(exc, failed) from exc


def _failed(
    source: sources.Source, reason: str, exc: BaseException, run: runs.Run | None
) -> evidence.Entry:
    log.warning(
        "source_failed",
        source_id=str(source.id),
        error_kind=errors.classify(exc)[0].value,
        error=errors.describe(exc),
    )
    return evidence.failed(
        source_id=str(source.id),
        platform=source.platform,
        capability=source.capability,
        reason=reason,
        exc=exc,
        run=facts(run) if run is not None else None,
    )
