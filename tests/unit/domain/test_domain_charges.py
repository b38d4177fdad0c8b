"""The charge-cap rule and why a kept dataset is partial (domain/charges.py)."""

from __future__ import annotations

import pytest

from kairo_ingest.domain import charges

PRICES = {"result": 0.004, "actor-start": 0.001}


def test_a_run_whose_next_charge_would_not_fit_stopped_at_its_cap() -> None:
    # 12 results at $0.004 and a start: $0.049 charged; one more result would be $0.053.
    assert charges.stopped_at_charge_cap(
        max_total_charge_usd=0.05,
        usage_total_usd=None,
        charged_event_counts={"result": 12, "actor-start": 1},
        event_prices_usd=PRICES,
    )


def test_platform_usage_the_account_pays_counts_against_the_max_too() -> None:
    # Events alone ($0.021) leave room, but with the platform usage the total is $0.0485.
    assert charges.stopped_at_charge_cap(
        max_total_charge_usd=0.05,
        usage_total_usd=0.0485,
        charged_event_counts={"result": 5, "actor-start": 1},
        event_prices_usd=PRICES,
    )


def test_a_run_that_finished_with_room_for_another_charge_did_not() -> None:
    assert not charges.stopped_at_charge_cap(
        max_total_charge_usd=0.05,
        usage_total_usd=0.03,
        charged_event_counts={"result": 5, "actor-start": 1},
        event_prices_usd=PRICES,
    )


def test_a_run_whose_next_charge_still_fits_is_not_capped() -> None:
    counts = {"result": 11, "actor-start": 1}  # $0.045; one more result: $0.049 <= $0.05
    assert charges.charged_usd(None, counts, PRICES) == pytest.approx(0.045)
    assert not charges.stopped_at_charge_cap(
        max_total_charge_usd=0.05,
        usage_total_usd=None,
        charged_event_counts=counts,
        event_prices_usd=PRICES,
    )


@pytest.mark.parametrize(
    ("usage", "capped"),
    [(0.05, True), (0.049995, True), (0.0499, False), (None, False)],
)
def test_without_prices_the_usage_must_reach_the_max(usage: float | None, capped: bool) -> None:
    assert charges.stopped_at_charge_cap(max_total_charge_usd=0.05, usage_total_usd=usage) is capped


def test_without_a_max_nothing_is_capped() -> None:
    assert not charges.stopped_at_charge_cap(max_total_charge_usd=None, usage_total_usd=100.0)


@pytest.mark.parametrize(
    ("status", "capped", "aborted_for", "reason"),
    [
        ("SUCCEEDED", False, None, None),
        ("SUCCEEDED", True, None, "charge_cap"),
        ("ABORTED", True, "timed_out", "charge_cap"),
        ("ABORTED", False, "timed_out", "timed_out"),
        ("ABORTED", False, None, "aborted"),
        ("TIMED-OUT", False, None, "timed_out"),
        ("FAILED", True, None, None),
    ],
)
def test_why_a_kept_dataset_is_partial(
    status: str, capped: bool, aborted_for: str | None, reason: str | None
) -> None:
    why = charges.partial_reason(
        status,
        capped=capped,
        aborted_for=charges.PartialReason(aborted_for) if aborted_for else None,
    )
    assert (None if why is None else why.value) == reason
