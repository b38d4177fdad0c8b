"""The retry rules (domain.retry), including the footguns of the old runner.

The old runner waited ``30 * 2 ** attempts`` seconds: double the base on the first
retry, growing without bound, with no jitter, and it retried every error alike.
"""

from __future__ import annotations

import pathlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kairo_ingest import config, errors
from kairo_ingest.domain import retry

ROOT = pathlib.Path(__file__).resolve().parents[3]


class _Top(random.Random):
    """An rng whose uniform() always returns the top of the range (the ceiling)."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_first_retry_delay_ceiling_is_the_base_not_double_it() -> None:
    assert retry.ceiling_seconds(1, 30.0, 900.0) == 30.0
    assert retry.backoff_seconds(1, base_seconds=30.0, cap_seconds=900.0, rng=_Top()) == 30.0


def test_backoff_ceiling_doubles_per_attempt() -> None:
    assert [retry.ceiling_seconds(a, 15.0, 10_000.0) for a in (1, 2, 3, 4)] == [
        15.0,
        30.0,
        60.0,
        120.0,
    ]


def test_backoff_delay_is_capped() -> None:
    assert retry.ceiling_seconds(7, 15.0, 900.0) == 900.0
    # Huge attempt numbers neither overflow nor escape the cap.
    assert retry.ceiling_seconds(100_000, 15.0, 900.0) == 900.0
    assert retry.backoff_seconds(100_000, base_seconds=15.0, cap_seconds=900.0) <= 900.0


def test_backoff_has_full_jitter() -> None:
    rng = random.Random(42)
    samples = [
        retry.backoff_seconds(3, base_seconds=10.0, cap_seconds=900.0, rng=rng) for _ in range(500)
    ]
    assert all(0.0 <= s <= 40.0 for s in samples)
    assert min(samples) < 4.0  # spread over the whole range, down to ~0 ...
    assert max(samples) > 36.0  # ... and up to the ceiling
    assert len(set(samples)) == len(samples)


@given(
    attempt=st.integers(min_value=-5, max_value=10_000),
    base=st.floats(min_value=0.0, max_value=1e6),
    cap=st.floats(min_value=0.0, max_value=1e9),
)
def test_backoff_always_within_zero_and_the_ceiling(attempt: int, base: float, cap: float) -> None:
    ceiling = retry.ceiling_seconds(attempt, base, cap)
    assert 0.0 <= ceiling <= cap
    assert 0.0 <= retry.backoff_seconds(attempt, base_seconds=base, cap_seconds=cap) <= ceiling


def test_negative_base_or_cap_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        retry.ceiling_seconds(1, -1.0, 10.0)


@pytest.mark.parametrize("attempts", [1, 2, 3, 50])
def test_permanent_errors_fail_at_once_whatever_the_attempts(attempts: int) -> None:
    assert (
        retry.decide(retryable=False, snooze=False, attempts=attempts, max_attempts=100)
        is retry.Action.FAIL
    )


@pytest.mark.parametrize("attempts", [1, 3, 7])
def test_not_now_snoozes_even_past_max_attempts(attempts: int) -> None:
    assert (
        retry.decide(retryable=True, snooze=True, attempts=attempts, max_attempts=3)
        is retry.Action.SNOOZE
    )


def test_retryable_errors_retry_until_attempts_are_exhausted() -> None:
    decisions = [
        retry.decide(retryable=True, snooze=False, attempts=a, max_attempts=3) for a in (1, 2, 3, 4)
    ]
    assert decisions == [
        retry.Action.RETRY,
        retry.Action.RETRY,
        retry.Action.FAIL,
        retry.Action.FAIL,
    ]


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (errors.ApifyAuthError("401"), retry.Action.FAIL),
        (errors.ApifyNotFoundError("404"), retry.Action.FAIL),
        (errors.ApifyInvalidInputError("400"), retry.Action.FAIL),
        (errors.NormalizationError("bad batch"), retry.Action.FAIL),
        (errors.ApifyNotNowError("429"), retry.Action.SNOOZE),
        (errors.ApifyTransientError("502"), retry.Action.RETRY),
        (errors.ApifyTimeoutError("deadline"), retry.Action.RETRY),
        (RuntimeError("anything else"), retry.Action.RETRY),
    ],
)
def test_classified_errors_map_to_actions(error: BaseException, action: retry.Action) -> None:
    _kind, retryable, snooze = errors.classify(error)
    assert retry.decide(retryable=retryable, snooze=snooze, attempts=1, max_attempts=3) is action


def test_plan_gives_the_delay_for_each_action() -> None:
    common = {"base_seconds": 15.0, "cap_seconds": 900.0, "snooze_seconds": 60.0, "rng": _Top()}
    assert retry.plan(retryable=True, snooze=False, attempts=2, max_attempts=3, **common) == (
        retry.Decision(retry.Action.RETRY, 30.0)
    )
    assert retry.plan(retryable=True, snooze=True, attempts=2, max_attempts=3, **common) == (
        retry.Decision(retry.Action.SNOOZE, 60.0)
    )
    assert retry.plan(retryable=False, snooze=False, attempts=1, max_attempts=3, **common) == (
        retry.Decision(retry.Action.FAIL, 0.0)
    )


class _Bottom(random.Random):
    """An rng whose uniform() always returns the bottom of the range."""

    def uniform(self, a: float, b: float) -> float:
        return a


@given(st.integers(min_value=1, max_value=80))
def test_the_worker_loops_wait_between_half_and_all_of_a_capped_doubling(failures: int) -> None:
    ceiling = min(5.0, 0.1 * 2.0 ** min(failures - 1, retry.MAX_EXPONENT))
    assert retry.retry_delay_seconds(failures, _Top()) == ceiling
    assert retry.retry_delay_seconds(failures, _Bottom()) == ceiling / 2
    delay = retry.retry_delay_seconds(failures, random.Random(failures))
    assert ceiling / 2 <= delay <= ceiling


def test_the_floor_of_the_one_formula_is_a_share_of_the_ceiling() -> None:
    kwargs = {"base_seconds": 2.0, "cap_seconds": 100.0}
    assert retry.backoff_seconds(3, rng=_Bottom(), **kwargs) == 0.0  # full jitter
    assert retry.backoff_seconds(3, rng=_Bottom(), floor=0.5, **kwargs) == 4.0
    assert retry.backoff_seconds(3, rng=_Top(), floor=0.5, **kwargs) == 8.0
    with pytest.raises(ValueError, match="floor"):
        retry.backoff_seconds(3, floor=1.5, **kwargs)


def test_no_worker_or_queue_module_computes_a_backoff_of_its_own() -> None:
    """One backoff formula (domain/retry.py): the worker's loops, final writes, give-ups,
    LISTEN reconnects, the pipeline's database retries and the Apify client's retries all
    call it instead of repeating the arithmetic. (The reaper's SQL states it once more, in
    queue/sql.py, because it runs in the database.)"""
    import pathlib

    import kairo_ingest

    root = pathlib.Path(kairo_ingest.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for package in ("worker", "queue", "pipeline", "apify")
        for path in sorted((root / package).glob("*.py"))
        if any(
            pattern in path.read_text()
            for pattern in (".random()", "2 **", "2.0**", "2.0 **", "ceiling_seconds(")
        )
    ]
    assert offenders == []


class _Bottom(random.Random):
    """An rng whose uniform() always returns the bottom of the range."""

    def uniform(self, a: float, b: float) -> float:
        return a


def test_a_job_retry_never_waits_less_than_half_its_ceiling() -> None:
    """Full jitter let every retry of a job draw a near-zero wait: three attempts then
    spanned seconds, and a two-minute incident failed every job it touched."""
    for attempt in (1, 2, 5, 9):
        decision = retry.plan(
            retryable=True,
            snooze=False,
            attempts=attempt,
            max_attempts=10,
            base_seconds=15.0,
            cap_seconds=900.0,
            snooze_seconds=60.0,
            rng=_Bottom(),
        )
        assert decision.action is retry.Action.RETRY
        assert decision.delay_seconds == 0.5 * retry.ceiling_seconds(attempt, 15.0, 900.0)


def test_the_default_retries_outlast_a_thirty_minute_outage() -> None:
    """With the default settings (15 s base, 15 min cap) and max_attempts, the shortest
    total backoff before the last attempt fails is over 30 minutes (docs/queue.md, Retries)."""
    fields = config.Settings.model_fields
    window = retry.least_retry_window_seconds(
        retry.DEFAULT_MAX_ATTEMPTS,
        base_seconds=fields["retry_base_seconds"].default,
        cap_seconds=fields["retry_cap_seconds"].default,
    )
    assert window >= 30 * 60
    assert window == 0.5 * (15 + 30 + 60 + 120 + 240 + 480 + 900 + 900 + 900)


def test_the_queue_page_states_the_default_retry_window_the_code_computes() -> None:
    """docs/queue.md gives the shortest and the longest total wait of the default retries:
    the figures are the code's, not copied by hand."""
    fields = config.Settings.model_fields
    window = {
        floor: retry.least_retry_window_seconds(
            retry.DEFAULT_MAX_ATTEMPTS,
            base_seconds=fields["retry_base_seconds"].default,
            cap_seconds=fields["retry_cap_seconds"].default,
            floor=floor,
        )
        for floor in (retry.JOB_FLOOR, 1.0)
    }
    least, most = window[retry.JOB_FLOOR], window[1.0]
    page = " ".join((ROOT / "docs" / "queue.md").read_text(encoding="utf-8").split())
    assert f"at least {least:,.0f} s ({least / 60:.1f} minutes)" in page
    assert f"at most {most:,.0f} s" in page
