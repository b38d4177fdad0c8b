"""The rules for how an attempt's end moves its job on (domain.endings), which both queue
adapters apply: the PostgreSQL statement and the in-memory queue."""

from __future__ import annotations

import random

import pytest

from kairo_ingest import errors
from kairo_ingest.domain import endings, retry, statuses

Outcome = statuses.AttemptOutcome
Status = statuses.JobStatus
CAPS = endings.Caps(max_interruptions=3, max_snoozes=2)


def _next(
    outcome: Outcome,
    *,
    terminal: bool = False,
    cancel_requested: bool = False,
    interruptions: int = 0,
    snoozes: int = 0,
    superseded: bool = False,
) -> Status:
    return endings.next_status(
        outcome,
        terminal=terminal,
        cancel_requested=cancel_requested,
        interruptions=interruptions,
        snoozes=snoozes,
        superseded=superseded,
        caps=CAPS,
    )


def test_an_operators_cancel_wins_over_every_ending_a_success_included() -> None:
    assert {_next(outcome, cancel_requested=True) for outcome in Outcome} == {Status.CANCELLED}


def test_a_success_ends_succeeded_even_when_a_follow_up_waits() -> None:
    assert _next(Outcome.SUCCEEDED, superseded=True) is Status.SUCCEEDED


def test_a_failure_for_good_or_a_cap_fails_the_job_before_a_follow_up_supersedes_it() -> None:
    assert _next(Outcome.FAILED, terminal=True, superseded=True) is Status.FAILED
    assert _next(Outcome.REAPED, interruptions=2, superseded=True) is Status.FAILED
    assert _next(Outcome.SNOOZED, snoozes=1, superseded=True) is Status.FAILED
    assert _next(Outcome.FAILED, superseded=True) is Status.CANCELLED
    assert _next(Outcome.FAILED) is Status.PENDING


@pytest.mark.parametrize("outcome", [Outcome.RELEASED, Outcome.GIVEN_UP, Outcome.REAPED])
def test_the_interruption_cap_counts_releases_give_ups_and_reaps(outcome: Outcome) -> None:
    assert _next(outcome, interruptions=1) is Status.PENDING
    assert _next(outcome, interruptions=2) is Status.FAILED


def test_a_hand_back_and_a_snooze_count_against_no_interruption_cap() -> None:
    assert _next(Outcome.HANDED_BACK, interruptions=50, snoozes=50) is Status.PENDING
    assert _next(Outcome.SNOOZED, interruptions=50) is Status.PENDING


def test_only_a_handlers_own_endings_spend_the_attempt() -> None:
    before = endings.Counts(attempts=3, interruptions=1, snoozes=1)
    after = {outcome: endings.counts_after(outcome, before) for outcome in Outcome}
    assert {o for o, c in after.items() if c.attempts == 2} == {
        Outcome.SNOOZED,
        Outcome.RELEASED,
        Outcome.GIVEN_UP,
        Outcome.REAPED,
        Outcome.HANDED_BACK,
    }
    assert {o for o, c in after.items() if c.interruptions == 2} == {
        Outcome.RELEASED,
        Outcome.GIVEN_UP,
        Outcome.REAPED,
    }
    assert {o for o, c in after.items() if c.snoozes == 2} == {Outcome.SNOOZED}
    assert endings.counts_after(Outcome.REAPED, endings.Counts(0, 0, 0)).attempts == 0


def test_the_stored_error_is_kept_only_when_nothing_went_wrong_with_the_job() -> None:
    kept = {
        (outcome, status)
        for outcome in Outcome
        for status in Status
        if endings.keeps_last_error(outcome, status)
    }
    assert kept == {
        (Outcome.SUCCEEDED, Status.SUCCEEDED),
        (Outcome.RELEASED, Status.PENDING),
        (Outcome.HANDED_BACK, Status.PENDING),
    }


def test_a_cancelled_job_stores_the_cancelled_kind_whatever_ended_its_attempt() -> None:
    kind = errors.ErrorKind.INTERNAL.value
    assert endings.stored_error_kind(Outcome.FAILED, cancel_requested=True, error_kind=kind) == (
        errors.ErrorKind.CANCELLED.value
    )
    assert endings.stored_error_kind(Outcome.FAILED, cancel_requested=False, error_kind=kind) == (
        kind
    )


def test_a_failure_waits_at_least_what_the_error_asks_unless_it_fails_for_good() -> None:
    def fail(error: BaseException, attempts: int) -> endings.Failure:
        return endings.failure(
            error,
            attempts=attempts,
            max_attempts=3,
            base_seconds=10.0,
            cap_seconds=10.0,
            snooze_seconds=60.0,
            rng=random.Random(1),
        )

    capped = fail(errors.BudgetExceededError("daily cap", retry_after_seconds=3600.0), 1)
    assert (capped.action, capped.outcome, capped.delay_seconds, capped.terminal) == (
        retry.Action.SNOOZE,
        Outcome.SNOOZED,
        3600.0,
        False,
    )
    retried = fail(errors.HandlerError("boom", retry_after_seconds=30.0), 1)
    assert (retried.action, retried.outcome, retried.delay_seconds) == (
        retry.Action.RETRY,
        Outcome.FAILED,
        30.0,
    )
    last = fail(errors.HandlerError("boom", retry_after_seconds=30.0), 3)
    assert (last.action, last.outcome, last.delay_seconds, last.terminal) == (
        retry.Action.FAIL,
        Outcome.FAILED,
        0.0,
        True,
    )
    assert last.error_kind == errors.ErrorKind.INTERNAL.value


def test_a_reaped_job_waits_the_job_backoff_doubling_per_interruption() -> None:
    delays = [
        endings.reap_delay_seconds(n, base_seconds=10.0, cap_seconds=35.0, rng=random.Random(n))
        for n in range(4)
    ]
    for delay, ceiling in zip(delays, (10.0, 20.0, 35.0, 35.0), strict=True):
        assert retry.JOB_FLOOR * ceiling <= delay <= ceiling
