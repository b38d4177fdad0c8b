from __future__ import annotations

import datetime as dt

import pytest

from kairo_ingest import errors
from kairo_ingest.domain import evidence, freshness, statuses
from support import outcomes

NOW = dt.datetime(2026, 1, 7, 12, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=24)


@pytest.mark.parametrize(
    ("age", "action", "reason"),
    [
        (dt.timedelta(hours=1), freshness.Action.REUSE, "fresh_run_within_ttl"),
        (TTL, freshness.Action.REUSE, "fresh_run_within_ttl"),  # exactly the TTL counts
        (TTL + dt.timedelta(microseconds=1), freshness.Action.REFRESH, "run_older_than_ttl"),
    ],
)
def test_freshness_reuses_runs_up_to_and_including_the_ttl(
    age: dt.timedelta, action: freshness.Action, reason: str
) -> None:
    decision = freshness.decide(
        force_refresh=False, newest_succeeded_finished_at=NOW - age, now=NOW, ttl=TTL
    )
    assert (decision.action, decision.reason) == (action, reason)
    assert decision.run_age_hours == round(age.total_seconds() / 3600, 3)


def test_force_refresh_and_no_run_refresh() -> None:
    assert (
        freshness.decide(
            force_refresh=True, newest_succeeded_finished_at=NOW, now=NOW, ttl=TTL
        ).reason
        == "force_refresh"
    )
    assert (
        freshness.decide(
            force_refresh=False, newest_succeeded_finished_at=None, now=NOW, ttl=TTL
        ).reason
        == "no_succeeded_run"
    )


def _entry(bucket: statuses.EvidenceBucket) -> evidence.Entry:
    return evidence.Entry(bucket, "s", "tiktok", "profile_videos", "r")


def _failure(exc: errors.KairoError) -> evidence.Entry:
    return evidence.failed(
        source_id="f", platform="web", capability="crawl_pages", reason="r", exc=exc
    )


def test_all_sources_ok_succeeds() -> None:
    entries = [_entry(statuses.EvidenceBucket(b)) for b in ("refreshed", "reused", "skipped")]
    assert evidence.verdict(entries) == (evidence.Verdict.SUCCEEDED, None)


def test_every_source_failed_never_succeeds() -> None:
    verdict, error = evidence.verdict([_failure(errors.ApifyRunFailedError("ended FAILED"))])
    assert verdict is evidence.Verdict.RETRY
    assert error is not None
    assert error.kind is errors.ErrorKind.APIFY_FAILED
    assert error.retryable


def test_only_permanent_failures_fail_and_not_now_snoozes() -> None:
    verdict, error = evidence.verdict(
        [_entry(statuses.EvidenceBucket.REFRESHED), _failure(errors.ApifyAuthError("401"))]
    )
    assert verdict is evidence.Verdict.FAILED
    assert error is not None
    assert not error.retryable
    assert "1 of 2 sources failed" in error.message

    verdict, error = evidence.verdict([_failure(errors.ApifyNotNowError("429"))])
    assert verdict is evidence.Verdict.SNOOZE
    assert error is not None
    assert error.snooze

    mixed = [_failure(errors.ApifyNotNowError("429")), _failure(errors.ApifyTimeoutError("t"))]
    assert evidence.verdict(mixed)[0] is evidence.Verdict.RETRY


def test_status_has_four_lists_and_failures_carry_kind_and_retryable() -> None:
    status = evidence.status(
        [_entry(statuses.EvidenceBucket.REUSED), _failure(errors.ApifyAuthError("401"))]
    )
    # The four lists, and the job's own spend.
    assert set(status) == {"refreshed", "reused", "skipped", "failed", "cost_usd"}
    assert status["cost_usd"] == 0
    failed = outcomes.only(status["failed"])
    assert failed["error_kind"] == "auth"
    assert failed["retryable"] is False
    assert "error_kind" not in status["reused"][0]
