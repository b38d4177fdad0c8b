"""The simulator speaks Apify's shapes: envelopes, errors, long-polls, limits and control."""

from __future__ import annotations

import base64
import gzip
import json

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import datasets, server, state
from support import plain_http

TOKEN = "sim-api-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUNS = "/v2/actors/apify~instagram-scraper/runs"


async def test_bad_or_missing_token_gets_401_envelope() -> None:
    async with (
        server.running(sim_config.SimConfig(expected_token=TOKEN)) as sim,
        plain_http.client(sim.base_url) as http,
    ):
        missing = await http.get("/v2/actor-runs/x")
        wrong = await http.get("/v2/actor-runs/x", headers={"Authorization": "Bearer nope"})
        right = await http.get("/v2/actor-runs/x", headers=AUTH)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "token-not-provided"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "user-or-token-not-found"
    assert right.status_code == 404
    assert right.json() == {
        "error": {"type": "record-not-found", "message": "Actor run was not found"}
    }


async def test_long_poll_answers_when_the_run_ends() -> None:
    cfg = sim_config.SimConfig(
        time_factor=0.01, duration_min_seconds=20, duration_max_seconds=20, ready_seconds=1
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        started = await http.post("/v2/acts/apify~instagram-scraper/runs", json={"username": ["a"]})
        assert started.status_code == 201
        run_id = started.json()["data"]["id"]
        assert started.json()["data"]["status"] == "READY"
        # A 60 s long-poll on a 0.2 s run: one request, answered with the terminal status.
        done = await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 60}, timeout=70)
        assert done.json()["data"]["status"] in ("SUCCEEDED", "FAILED", "TIMED-OUT")
        assert done.json()["data"]["finishedAt"] is not None
        assert sim.stats()["requests"]["get_run"] == 1


async def test_abort_gracefully_goes_through_aborting() -> None:
    cfg = sim_config.SimConfig(time_factor=1.0, abort_grace_seconds=0.05)
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json={"username": ["a"]})).json()["data"]["id"]
        aborting = await http.post(f"/v2/actor-runs/{run_id}/abort", params={"gracefully": "true"})
        assert aborting.json()["data"]["status"] == "ABORTING"
        final = await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 5})
        assert final.json()["data"]["status"] == "ABORTED"
        again = await http.post(f"/v2/actor-runs/{run_id}/abort")
        assert again.json()["data"]["status"] == "ABORTED"  # a no-op for an ended run
        assert sim.stats()["aborts"] == 1


async def test_list_runs_filters_and_pages() -> None:
    async with (
        server.running(sim_config.SimConfig(time_factor=1.0)) as sim,
        plain_http.client(sim.base_url) as http,
    ):
        ids = [
            (await http.post(RUNS, json={"username": [f"u{i}"]})).json()["data"]["id"]
            for i in range(5)
        ]
        await http.post("/v2/actors/other~actor/runs", json={})
        page = (await http.get(RUNS, params={"limit": 2, "offset": 1, "desc": "1"})).json()["data"]
        assert page["total"] == 5
        assert page["count"] == 2
        assert page["desc"] is True
        assert [item["id"] for item in page["items"]] == ids[::-1][1:3]
        future = (await http.get(RUNS, params={"startedAfter": "2999-01-01T00:00:00Z"})).json()
        assert future["data"]["total"] == 0
        ready = (await http.get(RUNS, params={"status": "READY,RUNNING"})).json()
        assert ready["data"]["total"] == 5


async def test_input_record_is_the_raw_json() -> None:
    async with (
        server.running(sim_config.SimConfig(time_factor=1.0)) as sim,
        plain_http.client(sim.base_url) as http,
    ):
        run_input = {"profiles": ["acme"], "resultsPerPage": 7}
        run_id = (await http.post(RUNS, json=run_input)).json()["data"]["id"]
        stored = await http.get(f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT")
        assert stored.json() == run_input
        empty_id = (await http.post(RUNS)).json()["data"]["id"]
        missing = await http.get(f"/v2/actor-runs/{empty_id}/key-value-store/records/INPUT")
        assert missing.status_code == 404
        assert sim.stats()["inputReads"] == 2


async def test_limits_cap_the_items_and_headers_paginate() -> None:
    cfg = sim_config.SimConfig(time_factor=0.001, outcome_weights={"SUCCEEDED": 1.0})
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        started = await http.post(
            RUNS, params={"maxItems": 30}, json={"username": ["a"], "resultsLimit": 40}
        )
        data = started.json()["data"]
        await http.get(f"/v2/actor-runs/{data['id']}", params={"waitForFinish": 10})
        items = await http.get(
            f"/v2/datasets/{data['defaultDatasetId']}/items",
            params={"offset": 25, "limit": 10, "clean": "true", "format": "json"},
        )
        assert len(items.json()) == 5
        assert items.headers["X-Apify-Pagination-Total"] == "30"
        assert items.headers["X-Apify-Pagination-Offset"] == "25"
        assert items.headers["X-Apify-Pagination-Limit"] == "10"
        assert items.headers["X-Apify-Pagination-Count"] == "5"
        assert items.headers["X-Apify-Pagination-Desc"] == "false"
        unknown = await http.get("/v2/datasets/nope/items")
        assert unknown.status_code == 404


async def test_not_now_when_the_account_is_full() -> None:
    cfg = sim_config.SimConfig(time_factor=1.0, max_concurrent_runs=1)
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        assert (await http.post(RUNS, json={})).status_code == 201
        refused = await http.post(RUNS, json={})
        assert refused.status_code == 400
        assert refused.json()["error"]["type"] == "concurrent-runs-limit-exceeded"
        assert sim.stats()["starts"] == 1


async def test_control_endpoints_change_faults_and_reset() -> None:
    async with (
        server.running(sim_config.SimConfig(time_factor=1.0)) as sim,
        plain_http.client(sim.base_url) as http,
    ):
        patch = {"faults": {"get_run": {"error_503": 1.0}}, "default_item_count": 3}
        changed = await http.post("/_sim/config", json=patch)
        assert changed.status_code == 200
        assert changed.json()["faults"]["get_run"]["error_503"] == 1.0
        run_id = (await http.post(RUNS, json={})).json()["data"]["id"]
        assert (await http.get(f"/v2/actor-runs/{run_id}")).status_code == 503
        stats = (await http.get("/_sim/stats")).json()
        assert stats["faults"] == {"get_run:error_503": 1}
        assert stats["requests"] == {"start": 1, "get_run": 1}
        bad = await http.post("/_sim/config", json={"nonsense": 1})
        assert bad.status_code == 400
        assert (await http.post("/_sim/reset")).json() == {"ok": True}
        assert (await http.get("/_sim/stats")).json()["starts"] == 0
        assert sim.state.runs == {}


async def test_start_accepts_gzip_and_webhooks() -> None:
    async with (
        server.running(sim_config.SimConfig(time_factor=1.0)) as sim,
        plain_http.client(sim.base_url) as http,
    ):
        hooks = base64.b64encode(json.dumps([{"eventTypes": ["ACTOR.RUN.SUCCEEDED"]}]).encode())
        started = await http.post(
            RUNS,
            params={"webhooks": hooks.decode(), "timeout": 60, "memory": 2048},
            content=gzip.compress(json.dumps({"username": ["gz"]}).encode()),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert started.status_code == 201
        run = sim.state.runs[started.json()["data"]["id"]]
        assert run.input == {"username": ["gz"]}
        assert started.json()["data"]["options"]["memoryMbytes"] == 2048


def test_run_plans_are_deterministic_and_respect_limits() -> None:
    cfg = sim_config.SimConfig(seed=8, outcome_weights={"SUCCEEDED": 1.0})
    first = state.plan_run(cfg, run_id="r1", run_input={"resultsLimit": 40}, max_items=25)
    again = state.plan_run(cfg, run_id="r1", run_input={"resultsLimit": 40}, max_items=25)
    assert first == again
    assert first.item_count == 25
    assert 5 <= first.duration_seconds <= 120
    assert state.plan_run(cfg, run_id="r2", run_input={"maxCrawlPages": 7}).item_count == 7
    assert state.plan_run(cfg, run_id="r3", run_input={}).item_count == cfg.default_item_count
    timed_out = state.plan_run(cfg, run_id="r4", run_input={}, timeout_secs=1)
    assert timed_out.outcome == "TIMED-OUT"
    assert timed_out.duration_seconds == 1
    assert datasets.item_cap({"resultsPerPage": 3, "limit": 9}, None) == 3
    assert datasets.item_cap({"username": ["a"]}, None) is None
