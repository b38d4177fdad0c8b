"""Fidelity: the official apify-client, pointed at the simulator, behaves as against Apify."""

from __future__ import annotations

import datetime as dt

import apify_client
import pytest

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import datasets, server

TOKEN = "fidelity-test-token"
ACTOR = "apify/instagram-scraper"


def sim_config_for_fidelity() -> sim_config.SimConfig:
    return sim_config.SimConfig(
        seed=21,
        expected_token=TOKEN,
        time_factor=0.05,
        duration_min_seconds=10,
        duration_max_seconds=20,
        outcome_weights={"SUCCEEDED": 1.0},
        default_item_count=2500,
        error_item_share=0.1,
        duplicate_share=0.1,
    )


def test_official_client_call_wait_abort_iterate() -> None:
    with server.running_in_thread(sim_config_for_fidelity()) as sim:
        client = apify_client.ApifyClient(TOKEN, api_url=sim.base_url, max_retries=2)
        actor = client.actor(ACTOR)
        run_input = {"username": ["acme"]}

        run = actor.call(run_input=run_input, logger=None)
        assert run is not None
        assert run.status == "SUCCEEDED"
        assert run.finished_at is not None

        items = list(client.dataset(run.default_dataset_id).iterate_items(chunk_size=1000))
        plan = datasets.served_plan(sim.config, ACTOR, run.id, run_input, 2500)
        assert len(items) == 2500
        ids = [item["id"] for item in items if "id" in item]
        assert list(dict.fromkeys(ids)) == list(plan.content_ids)

        started = actor.start(run_input={"username": ["other"]}, run_timeout=dt.timedelta(hours=1))
        assert started.status == "READY"
        aborted = client.run(started.id).abort(gracefully=True)
        assert aborted.status == "ABORTING"
        final = client.run(started.id).wait_for_finish(wait_duration=dt.timedelta(seconds=10))
        assert final is not None
        assert final.status == "ABORTED"

        listed = actor.runs().list(desc=True)
        assert [r.id for r in listed.items] == [started.id, run.id]
        assert client.run(run.id).key_value_store().get_record("INPUT")["value"] == run_input
        assert sim.stats()["starts"] == 2


def test_official_client_sees_api_errors() -> None:
    with server.running_in_thread(sim_config_for_fidelity()) as sim:
        missing = apify_client.ApifyClient(TOKEN, api_url=sim.base_url).run("nope").get()
        assert missing is None  # the official client maps record-not-found to None
        intruder = apify_client.ApifyClient("wrong-token", api_url=sim.base_url, max_retries=0)
        with pytest.raises(apify_client.errors.ApifyApiError) as caught:
            intruder.actor(ACTOR).start(run_input={})
        assert caught.value.status_code == 401
        assert caught.value.type == "user-or-token-not-found"


async def test_official_async_client_against_the_in_loop_simulator() -> None:
    cfg = sim_config_for_fidelity()
    async with server.running(cfg) as sim:
        client = apify_client.ApifyClientAsync(TOKEN, api_url=sim.base_url)
        run = await client.actor(ACTOR).call(run_input={"username": ["async"]}, logger=None)
        assert run is not None
        assert run.status == "SUCCEEDED"
        count = 0
        async for _ in client.dataset(run.default_dataset_id).iterate_items():
            count += 1
        assert count == 2500
