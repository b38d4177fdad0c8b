"""The platform behaviours of issue 8, each a simulator setting that is off by default."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import server
from support import plain_http

RUNS = "/v2/actors/apify~instagram-scraper/runs"
SENT = {"directUrls": ["https://www.instagram.com/acme/"], "resultsLimit": 5}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_defaults_off_store_the_input_as_sent() -> None:
    async with server.running() as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        stored = await http.get(f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT")
    assert stored.json() == SENT


async def test_input_defaults_fill_the_stored_input_and_sent_fields_win() -> None:
    cfg = sim_config.SimConfig(input_defaults=True)
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        stored = (await http.get(f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT")).json()
    assert stored != SENT
    assert {k: stored[k] for k in SENT} == SENT  # our fields, our values
    assert stored["searchType"] == "hashtag"  # a schema default we never sent


async def test_visibility_lag_hides_a_new_run_until_the_clock_moves() -> None:
    cfg = sim_config.SimConfig(visibility_lag_seconds=5.0)
    clock = FakeClock()
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        sim.state.clock = clock
        run_id = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        hidden = await http.get(f"/v2/actor-runs/{run_id}")
        listed = (await http.get(RUNS)).json()["data"]
        clock.now += 5.0
        seen = await http.get(f"/v2/actor-runs/{run_id}")
        relisted = (await http.get(RUNS)).json()["data"]
    assert hidden.status_code == 404
    assert hidden.json()["error"]["type"] == "record-not-found"
    assert listed["total"] == 0
    assert listed["items"] == []
    assert seen.status_code == 200
    assert [item["id"] for item in relisted["items"]] == [run_id]


async def test_a_lost_start_answer_creates_its_run_late() -> None:
    cfg = sim_config.SimConfig(
        late_creation_seconds=0.3, faults={"start": sim_config.FaultConfig(drop=1.0)}
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        with contextlib.suppress(httpx.HTTPError):
            await http.post(RUNS, json=SENT)
        assert sim.stats()["starts"] == 0  # nothing yet: the run is created later
        for _ in range(200):  # generous bounded polling
            if sim.stats()["starts"] == 1:
                break
            await asyncio.sleep(0.02)
        listed = (await http.get(RUNS)).json()["data"]
    assert sim.stats()["lateStarts"] == 1
    assert listed["total"] == 1


async def test_concurrent_runs_limit_status_is_drawn_from_the_configured_ones() -> None:
    cfg = sim_config.SimConfig(max_concurrent_runs=1, limit_error_statuses=[400, 402, 403])
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        assert (await http.post(RUNS, json=SENT)).status_code == 201
        refused = [await http.post(RUNS, json=SENT) for _ in range(30)]
    assert {r.status_code for r in refused} == {400, 402, 403}
    assert {r.json()["error"]["type"] for r in refused} == {"concurrent-runs-limit-exceeded"}


async def test_record_reads_redirect_to_a_signed_url_that_refuses_a_token() -> None:
    cfg = sim_config.SimConfig(record_redirects=True)
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        first = await http.get(f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT")
        location = first.headers["location"]
        plain = await http.get(location)
        with_token = await http.get(location, headers={"Authorization": "Bearer t"})
        forged = await http.get(location.replace("signature=", "signature=0"))
    assert first.status_code == 302
    assert plain.status_code == 200
    assert plain.json() == SENT
    assert with_token.status_code == 400
    assert forged.status_code == 403


async def test_a_run_times_out_through_timing_out() -> None:
    cfg = sim_config.SimConfig(
        time_factor=0.01,
        duration_min_seconds=10,
        duration_max_seconds=10,
        outcome_weights={"TIMED-OUT": 1.0},
        timing_out_seconds=30.0,
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        seen = "READY"
        for _ in range(200):
            seen = (await http.get(f"/v2/actor-runs/{run_id}")).json()["data"]["status"]
            if seen == "TIMING-OUT":
                break
            await asyncio.sleep(0.02)
        aborted = await http.post(f"/v2/actor-runs/{run_id}/abort", params={"gracefully": "false"})
        final = await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 10})
    assert seen == "TIMING-OUT"
    assert aborted.json()["data"]["status"] == "ABORTING"  # abortable
    assert final.json()["data"]["status"] == "ABORTED"  # well before its 30 s of TIMING-OUT


async def test_a_graceful_abort_takes_its_grace_and_a_hard_one_does_not() -> None:
    cfg = sim_config.SimConfig(abort_grace_seconds=30.0)
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        one = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        two = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        soft = await http.post(f"/v2/actor-runs/{one}/abort", params={"gracefully": "true"})
        hard = await http.post(f"/v2/actor-runs/{two}/abort", params={"gracefully": "false"})
        hard_end = await http.get(f"/v2/actor-runs/{two}", params={"waitForFinish": 10})
        still = await http.get(f"/v2/actor-runs/{one}")
    assert soft.json()["data"]["status"] == "ABORTING"
    assert hard.json()["data"]["status"] == "ABORTING"  # briefly (forced_abort_seconds)
    assert hard_end.json()["data"]["status"] == "ABORTED"
    assert still.json()["data"]["status"] == "ABORTING"  # the graceful one is in its grace


async def test_pagination_count_counts_rows_clean_skipped() -> None:
    cfg = sim_config.SimConfig(
        time_factor=0.001, duration_min_seconds=1, duration_max_seconds=1, empty_item_share=0.3
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run = (await http.post(RUNS, json={**SENT, "resultsLimit": 40})).json()["data"]
        await http.get(f"/v2/actor-runs/{run['id']}", params={"waitForFinish": 10})
        page = await http.get(
            f"/v2/datasets/{run['defaultDatasetId']}/items",
            params={"clean": "true", "offset": 0, "limit": 40},
        )
    count = int(page.headers["x-apify-pagination-count"])
    assert count == 40
    assert len(page.json()) < count
