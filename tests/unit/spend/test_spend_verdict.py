"""A job whose sources hit a daily cap snoozes until the cap's window resets,
and its evidence status totals what its own runs cost."""

from __future__ import annotations

from kairo_ingest import errors
from kairo_ingest.domain import evidence, statuses


def _failure(exc: Exception, source: str = "s") -> evidence.Entry:
    return evidence.failed(
        source_id=source, platform="instagram", capability="posts", reason="r", exc=exc
    )


def _run(bucket: statuses.EvidenceBucket, usd: float | None, source: str) -> evidence.Entry:
    facts = evidence.RunFacts("r", "a", "SUCCEEDED", "d", usage_total_usd=usd)
    return evidence.Entry(bucket, source, "tiktok", "profile_videos", "why", run=facts)


def test_cap_failures_snooze_until_the_earliest_window_reset() -> None:
    capped = [
        _failure(errors.BudgetExceededError("cap", retry_after_seconds=500), "a"),
        _failure(errors.BudgetExceededError("cap", retry_after_seconds=300), "b"),
    ]
    verdict, error = evidence.verdict(capped)
    assert verdict is evidence.Verdict.SNOOZE
    assert error is not None
    assert (error.kind, error.retry_after_seconds) == (errors.ErrorKind.BUDGET_EXCEEDED, 300)
    assert errors.retry_after(error) == 300


def test_a_plain_not_now_beside_a_cap_brings_the_job_back_at_the_usual_snooze() -> None:
    mixed = [
        _failure(errors.BudgetExceededError("cap", retry_after_seconds=500), "a"),
        _failure(errors.ApifyNotNowError("limit"), "b"),
    ]
    verdict, error = evidence.verdict(mixed)
    assert verdict is evidence.Verdict.SNOOZE
    assert error is not None
    assert error.retry_after_seconds is None


def test_cost_counts_this_jobs_runs_and_not_reused_ones() -> None:
    status = evidence.status(
        [
            _run(statuses.EvidenceBucket.REFRESHED, 0.25, "a"),
            _run(statuses.EvidenceBucket.REUSED, 9.0, "b"),
            _run(statuses.EvidenceBucket.REFRESHED, None, "c"),
        ]
    )
    assert status["cost_usd"] == 0.25
    assert status["refreshed"][0]["usage_total_usd"] == 0.25
    assert "usage_total_usd" not in status["refreshed"][1]
