"""The money fields of a run object: its charge limit, the events it charged, their prices."""

from __future__ import annotations

from kairo_ingest.apify import models


def test_a_run_object_carries_its_charge_limit_events_and_prices() -> None:
    run = models.parse_run(
        {
            "id": "run1",
            "status": "ABORTED",
            "usageTotalUsd": 0.0491,
            "options": {"maxTotalChargeUsd": 0.05, "memoryMbytes": 1024},
            "chargedEventCounts": {"result": 12, "actor-start": 1, "odd": "x"},
            "pricingInfo": {
                "pricingModel": "PAY_PER_EVENT",
                "pricingPerEvent": {
                    "actorChargeEvents": {
                        "result": {"eventTitle": "Result", "eventPriceUsd": 0.004},
                        "actor-start": {"eventPriceUsd": 0.001},
                    }
                },
            },
        },
        operation="get_run",
    )
    assert run.max_total_charge_usd == 0.05
    assert run.charged_event_counts == {"result": 12, "actor-start": 1}
    assert run.event_prices_usd == {"result": 0.004, "actor-start": 0.001}
    assert run.stopped_at_charge_cap


def test_a_run_object_without_money_fields_is_not_capped() -> None:
    run = models.parse_run({"id": "run1", "status": "SUCCEEDED"}, operation="get_run")
    assert run.max_total_charge_usd is None
    assert run.charged_event_counts is None
    assert run.event_prices_usd is None
    assert not run.stopped_at_charge_cap
