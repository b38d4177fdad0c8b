"""A run that reaches its ``maxTotalChargeUsd`` ends one of the two ways Apify's do.

The actor finishes by itself (SUCCEEDED, the default), or the platform aborts it: ABORTING
(``forced_abort_seconds``), then ABORTED. ``charge_cap_outcome_weights`` chooses, per run
and deterministically under the seed. Either way the dataset holds the items pushed
before the stop, ``chargedEventCounts`` counts them, and ``usageTotalUsd`` never exceeds
the max.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import platform, server
from support import plain_http

RUNS = "/v2/actors/apify~instagram-scraper/runs"
BODY = {"directUrls": ["https://www.instagram.com/acme/"], "resultsLimit": 40}
# 40 items over 20 s of 1 GB: about $0.0945 a run, so a $0.02 max stops it early.
PRICEY = sim_config.SimConfig(
    time_factor=0.01,
    ready_seconds=1,
    duration_min_seconds=20,
    duration_max_seconds=20,
    outcome_weights={"SUCCEEDED": 1.0},
    default_memory_mbytes=1024,
)
MAX = 0.02
ABORTS = dataclasses.replace(PRICEY, charge_cap_outcome_weights={"ABORTED": 1.0})


async def start(http: httpx.AsyncClient, max_usd: float | None = MAX) -> str:
    params = {} if max_usd is None else {"maxTotalChargeUsd": max_usd}
    started = await http.post(RUNS, json=BODY, params=params)
    assert started.status_code == 201, started.text
    return str(started.json()["data"]["id"])


async def final(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    got = await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 30})
    data = dict(got.json()["data"])
    assert data["finishedAt"] is not None, data["status"]
    return data


async def served(http: httpx.AsyncClient, run: dict[str, Any]) -> int:
    return len((await http.get(f"/v2/datasets/{run['defaultDatasetId']}/items")).json())


async def test_a_capped_run_the_platform_aborts_ends_aborted_with_what_it_pushed() -> None:
    async with server.running(ABORTS) as sim, plain_http.client(sim.base_url) as http:
        run = await final(http, await start(http))
        items = await served(http, run)
    assert run["status"] == "ABORTED"
    assert 0 < items < 40
    assert run["chargedEventCounts"] == {platform.RESULT_EVENT: items}
    assert MAX / 2 < run["usageTotalUsd"] <= MAX
    assert run["options"]["maxTotalChargeUsd"] == MAX
    assert sim.state.runs[run["id"]].plan.stopped_at_max_charge


async def test_a_capped_run_the_platform_aborts_passes_through_aborting() -> None:
    cfg = dataclasses.replace(ABORTS, forced_abort_seconds=30)
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = await start(http)
        run: dict[str, Any] = {}
        for _ in range(3000):  # until it reaches its max (about 0.05 s in)
            run = (await http.get(f"/v2/actor-runs/{run_id}")).json()["data"]
            if run["status"] not in ("READY", "RUNNING"):
                break
            await asyncio.sleep(0.005)
        items = await served(http, run)
    assert run["status"] == "ABORTING"
    assert run["finishedAt"] is None
    assert 0 < items < 40  # what it pushed is there already
    assert run["chargedEventCounts"] == {platform.RESULT_EVENT: items}
    assert run["usageTotalUsd"] <= MAX


async def test_by_default_a_capped_run_finishes_by_itself() -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        run = await final(http, await start(http))
        items = await served(http, run)
    assert run["status"] == "SUCCEEDED"
    assert 0 < items < 40
    assert run["chargedEventCounts"] == {platform.RESULT_EVENT: items}
    assert run["usageTotalUsd"] <= MAX


@pytest.mark.parametrize("max_usd", [None, 1.0])
async def test_a_run_that_never_reaches_its_max_ignores_the_cap_outcome(
    max_usd: float | None,
) -> None:
    async with server.running(ABORTS) as sim, plain_http.client(sim.base_url) as http:
        run = await final(http, await start(http, max_usd))
    assert run["status"] == "SUCCEEDED"
    assert run["chargedEventCounts"] == {platform.RESULT_EVENT: 40}
    assert not sim.state.runs[run["id"]].plan.stopped_at_max_charge


async def planned_outcomes(seed: int, runs: int) -> list[str]:
    cfg = dataclasses.replace(
        PRICEY, seed=seed, charge_cap_outcome_weights={"SUCCEEDED": 1.0, "ABORTED": 1.0}
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        for _ in range(runs):
            await start(http)
        summaries = (await http.get("/_sim/runs")).json()["runs"]
    assert all(s["stoppedAtMaxCharge"] for s in summaries)
    return [str(s["plannedOutcome"]) for s in summaries]


async def test_the_cap_outcome_is_drawn_per_run_and_repeats_under_the_seed() -> None:
    first = await planned_outcomes(seed=7, runs=16)
    again = await planned_outcomes(seed=7, runs=16)
    assert first == again
    assert set(first) == {"SUCCEEDED", "ABORTED"}


@pytest.mark.parametrize(
    "weights", [{"FAILED": 1.0}, {"SUCCEEDED": -1.0}, {"ABORTED": "often"}, ["ABORTED"]]
)
async def test_a_cap_outcome_setting_the_platform_cannot_produce_is_refused(
    weights: object,
) -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        refused = await http.post("/_sim/config", json={"charge_cap_outcome_weights": weights})
        shown = (await http.get("/_sim/config")).json()
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid-config"
    assert shown["charge_cap_outcome_weights"] == {"SUCCEEDED": 1.0}


async def test_the_cap_outcome_can_be_changed_at_run_time() -> None:
    async with server.running(PRICEY) as sim, plain_http.client(sim.base_url) as http:
        changed = await http.post(
            "/_sim/config", json={"charge_cap_outcome_weights": {"ABORTED": 1}}
        )
        run = await final(http, await start(http))
    assert changed.json()["charge_cap_outcome_weights"] == {"ABORTED": 1.0}
    assert run["status"] == "ABORTED"
