"""The evidence status of a compile job, and the job outcome it implies.

``evidence_status`` is ``{"refreshed": [...], "reused": [...], "skipped": [...],
"failed": [...]}`` with every enabled source of the brand exactly once. The old
runner marked a job succeeded even when every source failed; here the outcome is
derived from the entries: all ok -> succeeded; any retryable failure -> retry (snooze
when every retryable failure is "not now"); only permanent failures -> failed.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from kairo_ingest import errors
from kairo_ingest.domain import statuses


@dataclasses.dataclass(frozen=True, slots=True)
class RunFacts:
    run_id: str
    apify_run_id: str | None
    apify_status: str
    dataset_id: str | None
    raw_items: int = 0
    normalized_created: int = 0
    normalized_updated: int = 0
    items_skipped: int = 0
    usage_total_usd: float | None = None
    """What Apify reported the run cost (None: not reported)."""
    partial_reason: str | None = None
    """Why the run's kept dataset is partial: ``charge_cap``, ``aborted``, ``timed_out``
    (None: the run finished on its own). A charge-capped run is not started again."""


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    bucket: statuses.EvidenceBucket
    source_id: str
    platform: str
    capability: str
    reason: str
    run: RunFacts | None = None
    run_age_hours: float | None = None
    error_kind: str | None = None
    error: str | None = None
    retryable: bool | None = None
    snooze: bool = False
    retry_after_seconds: float | None = None
    """A snooze that must last at least this long (a daily cap: until its window resets)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "source_id": self.source_id,
            "platform": self.platform,
            "capability": self.capability,
            "reason": self.reason,
        }
        if self.run is not None:
            data.update(
                run_id=self.run.run_id,
                apify_run_id=self.run.apify_run_id,
                apify_status=self.run.apify_status,
                dataset_id=self.run.dataset_id,
                raw_items=self.run.raw_items,
                normalized_created=self.run.normalized_created,
                normalized_updated=self.run.normalized_updated,
                items_skipped=self.run.items_skipped,
            )
            if self.run.usage_total_usd is not None:
                data["usage_total_usd"] = self.run.usage_total_usd
            if self.run.partial_reason is not None:
                data.update(partial=True, partial_reason=self.run.partial_reason)
        if self.run_age_hours is not None:
            data["run_age_hours"] = self.run_age_hours
        if self.bucket is statuses.EvidenceBucket.FAILED:
            data.update(error_kind=self.error_kind, error=self.error, retryable=self.retryable)
        return data


def failed(
    *,
    source_id: str,
    platform: str,
    capability: str,
    reason: str,
    exc: BaseException,
    run: RunFacts | None = None,
) -> Entry:
    kind, retryable, snooze = errors.classify(exc)
    return Entry(
        statuses.EvidenceBucket.FAILED,
        source_id,
        platform,
        capability,
        reason,
        run=run,
        error_kind=kind.value,
        error=errors.describe(exc),
        retryable=retryable,
        snooze=snooze,
        retry_after_seconds=errors.retry_after(exc),
    )


COST_KEY = "cost_usd"


def status(entries: list[Entry]) -> dict[str, Any]:
    """The four lists, plus ``cost_usd``: what this job's own runs cost (reused runs were
    paid for by an earlier job and count 0 here), rounded to a micro-dollar."""
    out: dict[str, Any] = {b.value: [] for b in statuses.EvidenceBucket}
    for entry in sorted(entries, key=lambda e: (e.platform, e.capability, e.source_id)):
        out[entry.bucket.value].append(entry.to_json())
    out[COST_KEY] = round(
        sum(
            e.run.usage_total_usd or 0.0
            for e in entries
            if e.run is not None and e.bucket is not statuses.EvidenceBucket.REUSED
        ),
        6,
    )
    return out


class Verdict(enum.StrEnum):
    SUCCEEDED = "succeeded"
    RETRY = "retry"
    SNOOZE = "snooze"
    FAILED = "failed"


def verdict(entries: list[Entry]) -> tuple[Verdict, errors.JobError | None]:
    """The job outcome implied by its entries, with the error to store when it is not a success."""
    failures = [e for e in entries if e.bucket is statuses.EvidenceBucket.FAILED]
    if not failures:
        return Verdict.SUCCEEDED, None
    retryable = [e for e in failures if e.retryable]
    summary = "; ".join(f"{e.platform}.{e.capability}: {e.error_kind}: {e.error}" for e in failures)
    message = f"{len(failures)} of {len(entries)} sources failed: {summary}"
    if retryable:
        first = retryable[0]
        snooze = all(e.snooze for e in retryable)
        # The job may come back as soon as any of its retryable sources may proceed.
        waits = [e.retry_after_seconds for e in retryable]
        known = [w for w in waits if w is not None]
        after = min(known) if snooze and len(known) == len(waits) else None
        return (
            Verdict.SNOOZE if snooze else Verdict.RETRY,
            errors.JobError(
                message,
                kind=errors.ErrorKind(first.error_kind or "internal"),
                retryable=True,
                snooze=snooze,
                retry_after_seconds=after,
            ),
        )
    first = failures[0]
    return Verdict.FAILED, errors.JobError(
        message, kind=errors.ErrorKind(first.error_kind or "internal"), retryable=False
    )
