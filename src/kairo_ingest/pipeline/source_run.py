"""One source through one Apify run: intent, start or adopt, wait, fetch, normalize.

The run row is written *before* Apify hears of the run (status STARTING, with the
exact input and the intent's time), and ``sent_at`` is committed before each start
request goes out, so a crash at any point can be resumed without paying twice:

* no row, or the last run ended without a dataset worth keeping (START_FAILED, FAILED)
  -> a new intent, then start;
* STARTING and sent -> reconcile first, settled from ``sent_at``: adopt the Apify run
  whose INPUT matches (it takes its slot at once); only if none, take a slot like a new
  intent and start;
* STARTING and never sent -> take a slot and start;
* READY / RUNNING / ... -> wait on the same run again, with the run's own account;
* SUCCEEDED, or ended partial (charge cap, aborted, timed out), without stored items
  -> fetch (idempotent inserts);
* with stored items -> nothing to do.

Every request about an existing run uses the account that started it (``run.account``),
whatever the source's account is now; a new intent uses the source's account. A run's
end is recorded the same way on every path (``pipeline/run_ends.py``). When the job stops
following a run that has not ended (a wait that failed, an abort still ABORTING), the
run is released to the run ledger (``pipeline/ledger.py``), which follows it to its end.

The database is reached only through the run-store port (``d.runs``,
``pipeline/ports.py``) and Apify through its port (``d.apify``, ``apify/ports.py``), so
the state machine runs on in-memory adapters in its unit tests.
See docs/apify-runs.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator
from typing import Any

from kairo_ingest import clock, errors, logs
from kairo_ingest.apify import models as apify_models
from kairo_ingest.apify import reconcile
from kairo_ingest.db import runs, sources
from kairo_ingest.domain import charges, evidence, registry, statuses
from kairo_ingest.pipeline import budget as budget_module
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.pipeline import run_ends
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)


def kept(run: runs.Run) -> bool:
    """The run ended with a dataset worth keeping: SUCCEEDED, or partial (a charge cap, an
    abort, a timeout: paid results, and the same input would stop the same way)."""
    return run.status == statuses.RunStatus.SUCCEEDED or (
        run.partial_reason is not None and statuses.is_terminal(run.status)
    )


def restart_after(run: runs.Run | None) -> bool:
    """A new intent is needed: no run yet, or the last one ended with nothing to keep
    (START_FAILED, FAILED, or an older row that ended ABORTED or TIMED-OUT unlabelled)."""
    return run is None or (run.ended and not kept(run))


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
        partial_reason=run.partial_reason if kept(run) else None,
    )


class SourceRunError(Exception):
    """Carries the run a failure happened on, so the evidence entry can name it."""

    def __init__(self, cause: BaseException, run: runs.Run | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.run = run


async def _record_started(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run, info: apify_models.RunInfo
) -> runs.Run:
    """Bind the intent to its Apify run; a run that has already ended (adopted after it
    ended) has its end recorded at once, with its cost, like any other end."""
    with logs.bind(apify_run_id=info.id):
        log.info("apify_run_recorded", actor_id=run.actor_id, status=info.status)

    end = run_ends.end_of(info, ended_by=run_ends.EndedBy.ADOPTION) if info.terminal else None
    try:
        bound, wrote = await d.runs.bind_started(lease, run.id, info, end=end)
    except errors.DatabaseConstraintError as exc:
        # Two intents with identical input adopted the same run at the same moment; the
        # other one recorded it first. Stay STARTING: the next attempt reconciles again and
        # excludes that run.
        raise errors.ApifyStartUnknownError(
            f"Apify run {info.id} is already recorded for another intent"
        ) from exc
    if wrote:
        run_ends.counted(bound)
    return bound


async def _owned(d: deps_module.Deps, run: runs.Run) -> set[str]:
    """The Apify runs already recorded for the actor in the intent's listing window."""
    return await d.runs.owned_apify_run_ids(
        actor_id=run.actor_id, since=run.intent_at - reconcile.DEFAULT_CLOCK_SLACK
    )


async def _reconcile(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run
) -> tuple[runs.Run, apify_models.RunInfo | None]:
    """A resumed intent that was sent: adopt its run if Apify has one, settled from the
    last send (``sent_at``; the budget wait before it does not count). Errors keep the
    intent STARTING (``ApifyStartUnknownError``)."""
    assert run.sent_at is not None
    owned, now = await d.runs.owned_and_now(
        actor_id=run.actor_id, since=run.intent_at - reconcile.DEFAULT_CLOCK_SLACK
    )
    age = (now - run.sent_at).total_seconds()
    info = await reconcile.adopt_settled(
        d.apify,
        run.actor_id,
        run.input,
        intent_at=run.intent_at,
        exclude_run_ids=owned,
        settle_delays_seconds=reconcile.settle_left(age),
    )
    if info is None:
        return run, None
    log.info("apify_run_adopted", apify_run_id=info.id)
    return await _record_started(d, lease, run, info), info


async def _start(d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run) -> runs.Run:
    """Send the start (``sent_at`` committed before each send); an unknown outcome is
    reconciled inside ``start_or_adopt``."""
    owned = await _owned(d, run)

    async def before_send() -> None:
        await d.runs.mark_sent(lease, run.id)

    try:
        info = await reconcile.start_or_adopt(
            d.apify,
            run.actor_id,
            run.input,
            intent_at=run.intent_at,
            exclude_run_ids=owned,
            before_send=before_send,
            timeout_secs=int(d.run_deadline_seconds),
            memory_mbytes=d.run_memory_mbytes,
            max_items=run.item_cap,
            max_total_charge_usd=d.run_max_charge_usd,
        )
    except errors.ApifyError as exc:
        if not reconcile.is_definite_refusal(exc):
            raise  # a run may exist: stay STARTING, reconcile next time
        await d.runs.mark_start_failed(
            lease, run.id, error_kind=exc.kind.value, error_summary=exc.message
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


async def _record_end(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run, end: runs.End
) -> runs.Run:
    """Record the run's end (fenced); the first end recorded wins (``runs.record_end``)."""
    ended, wrote = await d.runs.record_end(lease, run.id, end)
    if wrote:
        run_ends.counted(ended)
    return ended


async def _release(d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run) -> runs.Run:
    """The job stops following a run that has not ended: the ledger follows it from now
    (``released_at``). A lost lease already left it to the ledger."""
    try:
        return await d.runs.release(lease, run.id)
    except (errors.LeaseLostError, errors.DatabaseError) as exc:
        log.warning("apify_run_release_failed", error=errors.describe(exc))
        return run


async def _wait(d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run) -> runs.Run:
    if run.apify_run_id is None:
        raise SourceRunError(
            errors.HandlerError(f"run {run.id} is {run.status} without an Apify run id"), run
        )
    elapsed = await d.runs.seconds_since_start(run.id)
    deadline = clock.Deadline.after(max(0.0, d.run_deadline_seconds - elapsed), d.clock)
    try:
        end = await d.apify.wait_or_abort(run.apify_run_id, deadline)
    except errors.ApifyError as exc:
        # No end in sight (a 404 past its grace, a refused token...): the run may go on.
        raise SourceRunError(exc, await _release(d, lease, run)) from exc
    if end.run is not None and end.run.terminal:
        if end.deadline_passed:
            # Aborted at our deadline (or ended just then): Apify's real status and cost.
            finished = run_ends.end_of(
                end.run,
                ended_by=run_ends.EndedBy.FINAL_LOOK,
                aborted_for=charges.PartialReason.TIMED_OUT,
                aborted=True,
            )
        else:
            finished = run_ends.end_of(end.run, ended_by=run_ends.EndedBy.JOB)
        return await _record_end(d, lease, run, finished)
    # Aborted at our deadline, but not ended by the final look (still ABORTING, or Apify
    # did not answer): the ledger records its end; its dataset is kept as timed out.
    status = end.run.status if end.run is not None else run.status
    run = await d.runs.mark_timed_out_unended(lease, run.id, status=status)
    raise SourceRunError(
        errors.ApifyTimeoutError(
            f"Apify run {run.apify_run_id} was aborted at the run deadline and had not ended "
            f"(still {status}); the run ledger records its end"
        ),
        run,
    )


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
    return await d.runs.set_dataset(lease, run.id, info.default_dataset_id)


async def _fetch(
    d: deps_module.Deps, lease: queue_jobs.Lease, run: runs.Run, source: sources.Source
) -> runs.Run:
    if run.dataset_id is None:
        run = await _dataset_of(d, lease, run)
    assert run.dataset_id is not None  # _dataset_of raised otherwise; narrows the type
    cap = run.item_cap or registry.cap_for(source.platform, source.capability, d.caps)
    store_page = functools.partial(
        d.runs.store_page, lease, run, platform=source.platform, capability=source.capability
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
    return await d.runs.mark_stored(lease, run.id)


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
        # A run that exists is the business of the account that started it (its token
        # reads, waits, aborts and fetches it); a new intent uses the source's account.
        account = source.account or "default"
        if run is not None and not restart_after(run):
            account = run.account
        if d.tenants is not None:
            tenant = await d.tenants.resolve(account)
            d = dataclasses.replace(d, apify=tenant.api, tenant=tenant)
            account = tenant.account
        run = await _advance(d, lease, source, spec, run, account=account)
    except SourceRunError as exc:
        return _failed(source, reason, exc.cause, exc.run)
    except errors.LeaseLostError:
        raise
    except Exception as exc:  # noqa: BLE001 - one source's failure is its entry, never its siblings'
        # Any exception, a KairoError or not (a KeyError, a RecursionError): this source's
        # `failed` entry (kind `internal` unless the error says better). Cancellation and a
        # lost lease are BaseException / re-raised above: they end the whole job.
        latest = await d.runs.latest_for(job_id=lease.job_id, source_id=source.id)
        return _failed(source, reason, exc, latest)
    return evidence.Entry(
        statuses.EvidenceBucket.REFRESHED,
        str(source.id),
        source.platform,
        source.capability,
        reason,
        run=facts(run),
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
    if restart_after(run):
        cap = registry.cap_for(source.platform, source.capability, d.caps)
        run = await d.runs.create_intent(
            lease,
            source=source,
            actor_id=spec.actor_id,
            run_input=spec.build_input(source.identifier, source.settings, cap),
            cap=cap,
            attempt=(run.attempt + 1) if run is not None else 1,
            account=account,
        )
        log.info("apify_run_intent", run_id=str(run.id), actor_id=run.actor_id)
        async with _slot(d, lease, run, force=False):
            run = await _start(d, lease, run)
            run = await _until_ended(d, lease, run)
    elif run is not None and run.status == statuses.RunStatus.STARTING:
        log.info("apify_run_intent_resumed", run_id=str(run.id), sent=run.sent_at is not None)
        adopted: apify_models.RunInfo | None = None
        if run.sent_at is not None:
            # A start was sent: its run may exist. Look before any budget or cap check, so
            # a run that exists is never marked START_FAILED and paid for again.
            run, adopted = await _reconcile(d, lease, run)
        if adopted is not None:
            async with _slot(d, lease, run, force=True):
                await _count_memory(d, lease, run, adopted)
                run = await _until_ended(d, lease, run)
        else:
            async with _slot(d, lease, run, force=False):
                run = await _start(d, lease, run)
                run = await _until_ended(d, lease, run)
    elif run is not None and not run.ended:
        # In flight on Apify already (a takeover): it occupies the account; take its slot.
        async with _slot(d, lease, run, force=True):
            if run.released_at is not None:
                run = await d.runs.take_back(lease, run.id)
            await _count_taken_over_memory(d, lease, run)
            run = await _until_ended(d, lease, run)
    assert run is not None
    with logs.bind(apify_run_id=run.apify_run_id):
        if not kept(run):
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
                partial_reason=run.partial_reason,
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
    """A slot of the account's shared budget, then one of the process's (``run_slots``),
    around a run's start and wait (pipeline/budget).

    A daily cap reached before the start marks the intent START_FAILED with kind
    ``budget_exceeded`` (the next attempt makes a new intent) and fails the source with a
    snoozing error: the job waits for the cap's window without spending an attempt.
    """
    if d.budget is None or d.tenant is None:
        async with d.run_slots:
            yield
        return
    try:
        # The account's slot first, then the process-wide one: sources waiting for a full
        # account must not hold the process's slots that another account could use.
        async with (
            d.budget.slot(budget_module.Ask(run, d.tenant, lease, force=force)),
            d.run_slots,
        ):
            yield
    except errors.BudgetExceededError as exc:
        if run.apify_run_id is not None or run.status != statuses.RunStatus.STARTING:
            raise
        failed = await d.runs.mark_start_failed(
            lease, run.id, error_kind=exc.kind.value, error_summary=exc.message
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
