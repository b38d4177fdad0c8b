"""One way to record a run's end, whoever sees it: the job's wait, an adoption, the final
look after a deadline abort, or the ledger service.

:func:`end_of` turns the final run object into the row's end (:class:`runs.End`): status,
``finished_at``, ``usageTotalUsd`` and usage, the charge limit and the events charged, the
dataset, why a kept dataset is partial (``domain/charges.py``), and for a FAILED run its
error. :func:`counted` counts a recorded end in the metrics, once: only the path whose
write recorded it (``runs.record_end`` lets the first end win) counts it.
"""

from __future__ import annotations

import enum

from kairo_ingest import errors, logs, metrics
from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import runs
from kairo_ingest.domain import charges, statuses

log = logs.get(__name__)


class EndedBy(enum.StrEnum):
    """Who recorded a run's end (``apify_runs.ended_by``)."""

    JOB = "job"
    ADOPTION = "adoption"
    FINAL_LOOK = "final_look"
    LEDGER = "ledger"


def end_of(
    info: apify_models.RunInfo,
    *,
    ended_by: str,
    aborted_for: str | None = None,
    aborted: bool = False,
) -> runs.End:
    """The end of a terminal run, as its final run object tells it.

    ``aborted_for`` is why we asked Apify to abort it, if we did (``timed_out`` at our
    deadline, ``aborted`` otherwise): an ABORTED run gets it as its partial reason unless
    its numbers say it stopped at its charge cap. ``aborted``: this path sent the abort.
    """
    reason = charges.partial_reason(
        info.status,
        capped=info.stopped_at_charge_cap,
        aborted_for=charges.PartialReason(aborted_for) if aborted_for else None,
    )
    error_kind = error_summary = None
    if info.status == statuses.RunStatus.FAILED:
        failure = errors.ApifyRunFailedError(
            f"Apify run {info.id} ended {info.status}"
            + (f": {info.status_message}" if info.status_message else "")
        )
        error_kind, error_summary = failure.kind.value, failure.message
    return runs.End(
        status=info.status,
        ended_by=ended_by,
        finished_at=info.finished_at,
        dataset_id=info.default_dataset_id,
        usage_total_usd=info.usage_total_usd,
        usage=info.usage,
        max_total_charge_usd=info.max_total_charge_usd,
        charged_event_counts=info.charged_event_counts,
        partial_reason=None if reason is None else reason.value,
        error_kind=error_kind,
        error_summary=error_summary,
        aborted=aborted,
    )


def how_it_ended(run: runs.Run) -> str:
    """``complete``, a partial reason, ``failed`` or the status: the metrics' label."""
    if run.partial_reason:
        return run.partial_reason
    if run.status == statuses.RunStatus.SUCCEEDED:
        return "complete"
    return run.status.lower()


def counted(run: runs.Run) -> None:
    """Count an end this path recorded (call only when ``record_end`` wrote it)."""
    metrics.APIFY_RUNS.labels(run.status).inc()
    metrics.APIFY_RUNS_ENDED.labels(run.account, how_it_ended(run), run.ended_by or "").inc()
    if run.usage_total_usd is None:
        metrics.APIFY_RUNS_ENDED_WITHOUT_COST.labels(run.account).inc()
        log.warning("apify_run_ended_without_cost", apify_run_id=run.apify_run_id)
    else:
        # The final run object's cost: what daily caps and `costs` count.
        metrics.APIFY_SPENT_USD.labels(run.account, run.actor_id).inc(float(run.usage_total_usd))
    log.info(
        "apify_run_end_recorded",
        apify_run_id=run.apify_run_id,
        status=run.status,
        partial_reason=run.partial_reason,
        ended_by=run.ended_by,
        usage_total_usd=None if run.usage_total_usd is None else float(run.usage_total_usd),
    )
