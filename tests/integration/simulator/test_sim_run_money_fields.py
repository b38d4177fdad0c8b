"""The money fields of the simulator's run object agree with each other and with the data.

Every simulated actor is priced per event (``pricingInfo``: ``PAY_PER_EVENT`` with one
event, ``apify-default-dataset-item``); the account also pays the run's platform usage.
At every read, ``usageTotalUsd`` = sum(``usageUsd``) + sum(``chargedEventCounts`` x
``eventPriceUsd``), rounded to 6 decimals and never more than ``maxTotalChargeUsd``;
the event count is the number of items the dataset serves and the ``DATASET_WRITES``.
A run stopped by its max is left with less room than one more result costs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from apify_client import _models

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import platform, server
from support import plain_http

RUNS = "/v2/actors/apify~instagram-scraper/runs"
BODY = {"directUrls": ["https://www.instagram.com/acme/"], "resultsLimit": 40}
PRICEY = sim_config.SimConfig(
    time_factor=0.01,
    ready_seconds=1,
    duration_min_seconds=20,
    duration_max_seconds=20,
    outcome_weights={"SUCCEEDED": 1.0},
    default_memory_mbytes=1024,
)
# One more result: its event and its dataset write.
ONE_MORE_RESULT_USD = platform.USD_PER_RESULT + platform.USD_PER_DATASET_WRITE


def charge_of(run: dict[str, Any]) -> float:
    """What the run's own fields say it cost."""
    events = run["pricingInfo"]["pricingPerEvent"]["actorChargeEvents"]
    charged = sum(
        count * events[name]["eventPriceUsd"] for name, count in run["chargedEventCounts"].items()
    )
    total = round(sum(run["usageUsd"].values()) + charged, 6)
    limit = run["options"].get("maxTotalChargeUsd")
    return total if limit is None else min(total, limit)


def assert_agrees(run: dict[str, Any]) -> None:
    assert run["usageTotalUsd"] == charge_of(run)
    items = run["chargedEventCounts"][platform.RESULT_EVENT]
    assert run["usage"]["DATASET_WRITES"] == items
    compute_usd = run["usage"]["ACTOR_COMPUTE_UNITS"] * platform.USD_PER_CU
    assert abs(run["usageUsd"]["ACTOR_COMPUTE_UNITS"] - compute_usd) < 1e-6
    assert run["stats"]["computeUnits"] == run["usage"]["ACTOR_COMPUTE_UNITS"]


async def reads_until_the_end(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["finishedAt"] is None:
        seen.append((await http.get(f"/v2/actor-runs/{run_id}")).json()["data"])
        await asyncio.sleep(0.01)
    return seen


@pytest.mark.parametrize("max_usd", [None, 0.02])
@pytest.mark.parametrize("cap_outcome", ["SUCCEEDED", "ABORTED"])
async def test_the_money_fields_agree_at_every_read(
    max_usd: float | None, cap_outcome: str
) -> None:
    cfg = dataclasses.replace(PRICEY, charge_cap_outcome_weights={cap_outcome: 1.0})
    params = {} if max_usd is None else {"maxTotalChargeUsd": max_usd}
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        started = (await http.post(RUNS, json=BODY, params=params)).json()["data"]
        seen = [started, *await reads_until_the_end(http, started["id"])]
        items = (await http.get(f"/v2/datasets/{started['defaultDatasetId']}/items")).json()
    for run in seen:
        assert_agrees(run)
    counts = [run["chargedEventCounts"][platform.RESULT_EVENT] for run in seen]
    charges = [run["usageTotalUsd"] for run in seen]
    assert counts == sorted(counts)  # both only grow
    assert charges == sorted(charges)
    assert counts[-1] == len(items)
    assert charges[-1] > 0
    if max_usd is not None:
        assert max(charges) <= max_usd


async def test_a_running_run_is_charged_for_what_it_pushed_so_far() -> None:
    two_seconds = dataclasses.replace(PRICEY, duration_min_seconds=200, duration_max_seconds=200)
    async with server.running(two_seconds) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=BODY)).json()["data"]["id"]
        seen = await reads_until_the_end(http, run_id)
    running = [run for run in seen if run["status"] == "RUNNING"]
    pushed = [run["chargedEventCounts"][platform.RESULT_EVENT] for run in running]
    # Some read caught it midway (a read after its last push but before its end timer
    # fires still says RUNNING, with all 40: also true of the platform).
    assert any(0 < count < 40 for count in pushed), pushed
    for run, count in zip(running, pushed, strict=True):
        assert run["usage"]["DATASET_WRITES"] == count
        assert run["usageTotalUsd"] >= count * platform.USD_PER_RESULT


@pytest.mark.parametrize("cap_outcome", ["SUCCEEDED", "ABORTED"])
@pytest.mark.parametrize("max_usd", [0.001, 0.005, 0.0123, 0.02, 0.05])
async def test_a_run_stopped_by_its_max_has_no_room_for_one_more_result(
    max_usd: float, cap_outcome: str
) -> None:
    cfg = dataclasses.replace(PRICEY, charge_cap_outcome_weights={cap_outcome: 1.0})
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=BODY, params={"maxTotalChargeUsd": max_usd})).json()[
            "data"
        ]["id"]
        done = await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 30})
    run = done.json()["data"]
    assert run["status"] == cap_outcome
    assert run["usageTotalUsd"] <= max_usd
    assert max_usd - run["usageTotalUsd"] < ONE_MORE_RESULT_USD


async def test_the_run_object_says_how_the_actor_is_priced() -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        started = await http.post(RUNS, json=BODY)
        listed = await http.get(RUNS)
    run = _models.RunResponse.model_validate(started.json()).data
    pricing = run.pricing_info
    assert isinstance(pricing, _models.PayPerEventActorPricingInfo)
    assert pricing.pricing_model == "PAY_PER_EVENT"
    events = pricing.pricing_per_event.actor_charge_events
    assert events is not None
    assert events[platform.RESULT_EVENT].event_price_usd == platform.USD_PER_RESULT
    assert pricing.minimal_max_total_charge_usd is None
    assert run.charged_event_counts == {platform.RESULT_EVENT: 0}
    assert run.usage_usd is not None
    # A list item is short: no pricing nor events, as RunListItem defines it.
    item = listed.json()["data"]["items"][0]
    assert "pricingInfo" not in item
    assert "chargedEventCounts" not in item


async def test_a_max_below_the_actors_minimum_is_refused() -> None:
    cfg = dataclasses.replace(PRICEY, minimal_max_total_charge_usd=0.5)
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        below = await http.post(RUNS, json=BODY, params={"maxTotalChargeUsd": "0.1"})
        starts_before = sim.stats()["starts"]
        at = await http.post(RUNS, json=BODY, params={"maxTotalChargeUsd": "0.5"})
        without = await http.post(RUNS, json=BODY)
    assert below.status_code == 400
    error = _models.ErrorResponse.model_validate(below.json()).error
    assert error.type == "max-total-charge-usd-below-minimum"
    assert starts_before == 0
    assert at.status_code == without.status_code == 201
    pricing = at.json()["data"]["pricingInfo"]
    assert pricing["minimalMaxTotalChargeUsd"] == 0.5
