"""``maxTotalChargeUsd`` in the simulator, as on Apify for pay-per-event actors (issue 10).

A start may carry the most the run may charge. The run object echoes it in
``options.maxTotalChargeUsd``; the run's ``usageTotalUsd`` never exceeds it; a run whose
charge reaches it stops producing items and, by default, ends SUCCEEDED with what it
pushed (the platform may also abort it: ``test_sim_charge_cap_outcomes``). A value
that is not a non-negative number is refused with ``invalid-parameter``, and no run is
created.
"""

from __future__ import annotations

import asyncio
import typing

import httpx
import pytest
from apify_client import _literals, _models

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import server
from kairo_apify_sim import state as sim_state
from support import plain_http

RUNS = "/v2/actors/apify~instagram-scraper/runs"
BODY = {"directUrls": ["https://www.instagram.com/acme/"], "resultsLimit": 40}
# 40 items over 20 s of 1 GB: about 0.000055 + 0.0022 + 40 x 0.002305 = $0.0945 a run.
PRICEY = sim_config.SimConfig(
    time_factor=0.01,
    ready_seconds=1,
    duration_min_seconds=20,
    duration_max_seconds=20,
    outcome_weights={"SUCCEEDED": 1.0},
)
MAX = 0.02


def run_of(response: httpx.Response) -> _models.Run:
    assert response.status_code in (200, 201), response.text
    return _models.RunResponse.model_validate(response.json()).data


async def finished(http: httpx.AsyncClient, started: httpx.Response) -> _models.Run:
    run_id = run_of(started).id
    return run_of(await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 10}))


def pushed(sim: server.RunningSimulator, run_id: str) -> int | None:
    return sim.state.runs[run_id].final_item_count


def known_error_types() -> set[str]:
    """The error types of ``apify_client._literals.ErrorType`` (``Literal[...] | str``)."""
    return {
        value
        for arg in typing.get_args(_literals.ErrorType)
        for value in typing.get_args(arg)
        if isinstance(value, str)
    }


async def item_count(http: httpx.AsyncClient, run: _models.Run) -> int:
    served = await http.get(f"/v2/datasets/{run.default_dataset_id}/items")
    assert served.status_code == 200
    return len(served.json())


async def test_the_max_is_echoed_in_the_runs_options_and_absent_without_one() -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        capped = run_of(await http.post(RUNS, json=BODY, params={"maxTotalChargeUsd": "0.5"}))
        plain = run_of(await http.post(RUNS, json=BODY, params={"memory": 1024}))
    assert capped.options is not None
    assert plain.options is not None
    assert capped.options.max_total_charge_usd == 0.5
    assert plain.options.max_total_charge_usd is None
    assert "maxTotalChargeUsd" not in sim.state.runs[plain.id].options


async def test_a_run_whose_charge_would_pass_the_max_stops_there_and_succeeds() -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        uncapped = await finished(http, await http.post(RUNS, json=BODY))
        capped = await finished(
            http, await http.post(RUNS, json=BODY, params={"maxTotalChargeUsd": MAX})
        )
        served = await item_count(http, capped)
    assert uncapped.status == "SUCCEEDED"
    assert uncapped.usage_total_usd is not None
    assert uncapped.usage_total_usd > 3 * MAX
    assert pushed(sim, uncapped.id) == 40
    assert capped.status == "SUCCEEDED"
    assert capped.usage_total_usd is not None
    assert capped.usage_total_usd <= MAX
    assert capped.usage_total_usd > MAX / 2  # it did spend, up to the max
    assert 0 < served < 40
    assert pushed(sim, capped.id) == served
    assert capped.status_message is not None
    assert "maximum total charge" in capped.status_message


async def test_a_running_run_never_reports_more_than_its_max() -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        run_id = run_of(await http.post(RUNS, json=BODY, params={"maxTotalChargeUsd": MAX})).id
        seen: list[float] = []
        while True:
            run = run_of(await http.get(f"/v2/actor-runs/{run_id}"))
            assert run.usage_total_usd is not None
            seen.append(run.usage_total_usd)
            if run.finished_at is not None:
                break
            await asyncio.sleep(0.01)
    assert max(seen) <= MAX
    assert seen == sorted(seen)  # the charge only grows


async def test_a_max_of_zero_runs_nothing_and_charges_nothing() -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        run = await finished(
            http, await http.post(RUNS, json=BODY, params={"maxTotalChargeUsd": 0})
        )
        served = await item_count(http, run)
    assert (run.status, run.usage_total_usd, served) == ("SUCCEEDED", 0.0, 0)


@pytest.mark.parametrize("raw", ["-1", "-0.01", "five", "nan", "inf", "1e999", "1_0", "0x10"])
async def test_a_max_apify_would_refuse_is_refused(raw: str) -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        refused = await http.post(RUNS, json=BODY, params={"maxTotalChargeUsd": raw})
    assert refused.status_code == 400
    error = _models.ErrorResponse.model_validate(refused.json()).error
    assert error.type == "invalid-parameter"
    assert error.type in known_error_types()
    assert sim.state.runs == {}
    assert sim.stats()["starts"] == 0


@pytest.mark.parametrize("memory", [128, 1024, 8192])
@pytest.mark.parametrize("items", [0, 1, 7, 40, 5000])
def test_a_capped_plan_costs_at_most_its_max_and_keeps_more_items_for_more(
    memory: int, items: int
) -> None:
    plan = sim_state.RunPlan(duration_seconds=120.0, outcome="FAILED", item_count=items)
    kept: list[int] = []
    for limit in [0.0, 0.00001, 0.0001, 0.001, 0.005, 0.02, 0.1, 1.0, 100.0]:
        capped = sim_state.charge_capped(plan, memory_mbytes=memory, max_total_charge_usd=limit)
        cost = sim_state.cost_usd(
            memory_mbytes=memory,
            simulated_seconds=capped.duration_seconds,
            items=capped.item_count,
        )
        if capped == plan:  # the whole plan fits: nothing changes
            assert cost <= limit
        else:
            assert capped.stopped_at_max_charge
            assert capped.outcome == "SUCCEEDED"
            assert cost <= limit or capped.duration_seconds == capped.item_count == 0
        assert capped.duration_seconds <= plan.duration_seconds
        kept.append(capped.item_count)
    assert kept == sorted(kept)
    assert kept[-1] == items
