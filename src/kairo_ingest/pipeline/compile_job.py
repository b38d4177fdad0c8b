"""The brand compile job: every enabled source refreshed, reused or skipped, concurrently.

Returns the evidence status and, when the job should not succeed, the error to store.
Sources are isolated: any exception of one source (a KairoError or not: a KeyError, a
RecursionError) becomes that source's `failed` entry (kind `internal` unless the error
says better) and its siblings go on, so the evidence status is always complete. Only a
lost lease and cancellation end the whole job. The old runner ran sources one by one and
marked the job succeeded even when every source failed; here sources run under a per-job
bound (and the process-wide bound on Apify runs), and the verdict comes from the entries
(:mod:`kairo_ingest.domain.evidence`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from kairo_ingest import errors, logs, tracing
from kairo_ingest.db import opening, sources
from kairo_ingest.domain import evidence, freshness, registry, statuses
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.pipeline import source_run, store, tx
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    evidence_status: dict[str, Any]
    verdict: evidence.Verdict
    error: errors.JobError | None


async def run(d: deps_module.Deps, lease: queue_jobs.Lease) -> Result:
    if lease.brand_id is None:
        raise errors.JobError("a compile job needs a brand_id", kind=errors.ErrorKind.INVALID_INPUT)
    force = bool(lease.params.get("force_refresh", False))
    brand_id = lease.brand_id

    async def read_opening() -> opening.Opening:
        # now(), the enabled sources and their runs: one autocommit statement, shared
        # with the other jobs that start at the same time (pipeline/openings.py).
        return await d.openings.read(brand_id=brand_id, job_id=lease.job_id)

    start = await tx.call(d.retry_policy, read_opening, operation="opening_read")
    now = start.now
    tasks: list[asyncio.Task[evidence.Entry]] = []
    if start.sources:  # a brand without sources skips the task group
        bound = asyncio.Semaphore(d.source_concurrency)

        async def one(state: opening.SourceState) -> evidence.Entry:
            source = state.source
            async with bound:
                with (
                    logs.bind(source_id=source.id),
                    tracing.span(
                        f"source {source.platform}.{source.capability}",
                        {
                            "kairo.source.id": str(source.id),
                            "kairo.source.platform": source.platform,
                            "kairo.source.capability": source.capability,
                        },
                    ) as source_span,
                ):
                    try:
                        entry = await _source(d, lease, state, force=force, now=now)
                    except errors.LeaseLostError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - isolation: see the docstring
                        entry = _crashed(source, exc)
                    _annotate(source_span, entry)
                    return entry

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(one(s), name=f"source-{s.source.id}") for s in start.sources
                ]
        except BaseExceptionGroup as group_error:
            # Every exception of a source is its entry, so what escapes is a lost lease (or
            # cancellation). Surface it unwrapped: the worker treats a lost lease as a loss,
            # not as a failure to record.
            lost = group_error.subgroup(errors.LeaseLostError)
            raise (lost.exceptions[0] if lost else group_error.exceptions[0]) from None
    entries = [t.result() for t in tasks]
    verdict, error = evidence.verdict(entries)
    status = evidence.status(entries)
    log.info(
        "compile_finished",
        verdict=verdict.value,
        **{b.value: len(status[b.value]) for b in statuses.EvidenceBucket},
        cost_usd=status[evidence.COST_KEY],
    )
    return Result(status, verdict, error)


def _annotate(source_span: tracing.Span, entry: evidence.Entry) -> None:
    """The source's span says where its entry went, and why; a failed one is an error."""
    run = entry.run
    tracing.annotate(
        source_span,
        {
            "kairo.evidence.bucket": entry.bucket.value,
            "kairo.evidence.reason": entry.reason,
            "kairo.run.id": run.run_id if run is not None else None,
            "apify.run_id": run.apify_run_id if run is not None else None,
        },
    )
    if entry.bucket is statuses.EvidenceBucket.FAILED:
        tracing.fail_as(source_span, entry.error_kind, entry.error)


def _crashed(source: sources.Source, exc: Exception) -> evidence.Entry:
    """The `failed` entry of a source whose handling raised outside its run's own handling."""
    log.warning(
        "source_crashed",
        error_kind=errors.classify(exc)[0].value,
        error=errors.describe(exc),
        exc_info=not isinstance(exc, errors.KairoError),
    )
    return evidence.failed(
        source_id=str(source.id),
        platform=source.platform,
        capability=source.capability,
        reason="crashed",
        exc=exc,
    )


async def _source(
    d: deps_module.Deps,
    lease: queue_jobs.Lease,
    state: opening.SourceState,
    *,
    force: bool,
    now: Any,
) -> evidence.Entry:
    source = state.source

    def entry(bucket: statuses.EvidenceBucket, reason: str, **extra: Any) -> evidence.Entry:
        return evidence.Entry(
            bucket, str(source.id), source.platform, source.capability, reason, **extra
        )

    spec = registry.find_spec(source.platform, source.capability)
    if spec is None:
        return evidence.failed(
            source_id=str(source.id),
            platform=source.platform,
            capability=source.capability,
            reason="unknown_capability",
            exc=errors.JobError(
                f"no actor for {source.platform}.{source.capability}",
                kind=errors.ErrorKind.INVALID_INPUT,
                retryable=False,
            ),
        )
    ok, why = registry.capability_enabled(
        source.platform, source.capability, d.features, d.disabled_capabilities
    )
    if not ok:
        return entry(statuses.EvidenceBucket.SKIPPED, why)

    # This job's own run and the reusable one came with the opening read.
    own, reusable = state.own, (state.reusable if state.own is None else None)
    if own is not None:
        # This job already has a run for the source (a retry, or a takeover after a crash).
        return await source_run.run(d, lease, source, spec, reason="resumed", run=own)

    decision = freshness.decide(
        force_refresh=force,
        newest_succeeded_finished_at=reusable.finished_at if reusable else None,
        now=now,
        ttl=d.freshness_ttl,
    )
    if decision.action is freshness.Action.REFRESH or reusable is None:
        return await source_run.run(d, lease, source, spec, reason=decision.reason, run=None)

    facts = source_run.facts(reusable)
    if reusable.normalized_at is None:
        cap = reusable.item_cap or registry.cap_for(source.platform, source.capability, d.caps)
        counts = await store.renormalize(
            d.engine,
            lease,
            reusable,
            platform=source.platform,
            capability=source.capability,
            cap=cap,
            policy=d.retry_policy,
        )
        facts = dataclasses.replace(
            facts,
            normalized_created=counts.created,
            normalized_updated=counts.updated,
            items_skipped=counts.skipped,
        )
    else:
        # Nothing was normalized by this job: the counts describe this job's work.
        facts = dataclasses.replace(facts, normalized_created=0, normalized_updated=0)
    return entry(
        statuses.EvidenceBucket.REUSED,
        decision.reason,
        run=facts,
        run_age_hours=decision.run_age_hours,
    )
