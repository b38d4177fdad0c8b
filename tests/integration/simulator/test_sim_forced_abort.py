"""A forced abort (``gracefully=false``) passes through ABORTING before ABORTED, as on Apify.

It spends ``forced_abort_seconds`` (real seconds, short by default) in ABORTING, with the
run stopped at once: its items and charge no longer grow. A ``waitForFinish`` long-poll
answers once the run is ABORTED. A graceful abort keeps its own, longer, phase
(``abort_grace_seconds``; see ``test_sim_platform``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import platform, server
from support import plain_http

RUNS = "/v2/actors/apify~instagram-scraper/runs"
BODY = {"directUrls": ["https://www.instagram.com/acme/"], "resultsLimit": 40}
LONG = sim_config.SimConfig(
    time_factor=1.0, duration_min_seconds=600, duration_max_seconds=600, forced_abort_seconds=30
)


async def forced_abort(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    answer = await http.post(f"/v2/actor-runs/{run_id}/abort", params={"gracefully": "false"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["data"])


async def test_a_forced_abort_answers_aborting_and_stays_there_for_its_phase() -> None:
    async with server.running(LONG) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=BODY)).json()["data"]["id"]
        aborted = await forced_abort(http, run_id)
        looked = (await http.get(f"/v2/actor-runs/{run_id}")).json()["data"]
    assert aborted["status"] == looked["status"] == "ABORTING"
    assert looked["finishedAt"] is None
    assert looked["exitCode"] is None
    assert sim.stats()["aborts"] == 1
    assert sim.state.active == {run_id}  # still counted in flight until ABORTED


async def test_a_wait_for_finish_answers_once_the_forced_abort_ends() -> None:
    cfg = sim_config.SimConfig(
        time_factor=1.0,
        duration_min_seconds=600,
        duration_max_seconds=600,
        forced_abort_seconds=0.3,
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=BODY)).json()["data"]["id"]
        aborted = await forced_abort(http, run_id)
        final = (await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 30})).json()
    assert aborted["status"] == "ABORTING"
    assert final["data"]["status"] == "ABORTED"
    assert final["data"]["finishedAt"] is not None
    assert sim.stats()["requests"]["get_run"] == 1  # one long-poll, answered at the end


async def test_a_forced_abort_stops_the_run_at_once() -> None:
    """Nothing is pushed or charged during the ABORTING phase of a forced abort."""
    cfg = sim_config.SimConfig(
        time_factor=0.05,
        ready_seconds=1,
        duration_min_seconds=200,
        duration_max_seconds=200,
        outcome_weights={"SUCCEEDED": 1.0},
        forced_abort_seconds=0.5,
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=BODY)).json()["data"]["id"]
        for _ in range(2000):  # until it has pushed something (about 0.3 s in)
            seen = (await http.get(f"/v2/actor-runs/{run_id}")).json()["data"]
            if seen["chargedEventCounts"][platform.RESULT_EVENT] > 0:
                break
            await asyncio.sleep(0.005)
        aborted = await forced_abort(http, run_id)
        final = (await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 30})).json()
        served = (await http.get(f"/v2/datasets/{aborted['defaultDatasetId']}/items")).json()
    pushed = aborted["chargedEventCounts"][platform.RESULT_EVENT]
    assert aborted["status"] == "ABORTING"
    assert final["data"]["status"] == "ABORTED"
    assert 0 < pushed < 40
    assert final["data"]["chargedEventCounts"] == aborted["chargedEventCounts"]
    assert final["data"]["usageTotalUsd"] == aborted["usageTotalUsd"]
    assert len(served) == pushed
