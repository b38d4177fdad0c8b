"""A lost start answer is reconciled to exactly one run; a 25,000-item dataset pages exactly."""

from __future__ import annotations

import datetime as dt

import pytest

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import datasets, server
from kairo_ingest import clock
from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import reconcile

ACTOR = "apify~instagram-scraper"


async def test_reconciliation_adopts_a_run_whose_start_answer_was_lost() -> None:
    cfg = sim_config.SimConfig(seed=3, time_factor=0.01)
    async with server.running(cfg) as sim, apify_client.ApifyClient(sim.base_url, None) as api:
        other = await api.start_run(ACTOR, {"username": ["someone-else"], "resultsLimit": 5})
        # From now on every start creates its run, then the connection drops unanswered.
        sim.config.apply({"faults": {"start": {"drop": 1.0, "after_effect": True}}})
        ours = {"username": ["acme"], "resultsLimit": 5}
        intent_at = dt.datetime.now(dt.UTC)

        run = await reconcile.start_or_adopt(api, ACTOR, ours, intent_at=intent_at)

        stats = sim.stats()
        assert stats["starts"] == 2  # the other run, and ours exactly once
        assert stats["requests"]["start"] == 2
        assert stats["faults"] == {"start:drop": 1}
        assert run.id != other.id
        assert sim.state.runs[run.id].input == ours
        # A worker that crashed before recording the run finds it again, and starts nothing.
        again = await reconcile.adopt_existing(api, ACTOR, ours, intent_at)
        assert again is not None
        assert again.id == run.id
        assert sim.stats()["starts"] == 2


async def test_a_lost_start_with_a_max_charge_adopts_its_run_by_input_containment() -> None:
    """``maxTotalChargeUsd`` is a query parameter, not part of INPUT: the stored INPUT (with
    the actor's defaults filled in) still holds ours, and the adopted run carries the max."""
    cfg = sim_config.SimConfig(seed=3, time_factor=0.01, input_defaults=True)
    async with server.running(cfg) as sim, apify_client.ApifyClient(sim.base_url, None) as api:
        sim.config.apply({"faults": {"start": {"drop": 1.0, "after_effect": True}}})
        ours = {"username": ["acme"], "resultsLimit": 5}
        run = await reconcile.start_or_adopt(
            api, ACTOR, ours, intent_at=dt.datetime.now(dt.UTC), max_total_charge_usd=0.25
        )
        assert sim.stats()["starts"] == 1
        adopted = sim.state.runs[run.id]
        assert adopted.stored_input != ours  # a superset: the actor's defaults
        assert adopted.options["maxTotalChargeUsd"] == 0.25


async def test_adopt_existing_finds_nothing_for_a_new_input() -> None:
    async with (
        server.running(sim_config.SimConfig(time_factor=0.01)) as sim,
        apify_client.ApifyClient(sim.base_url, None) as api,
    ):
        await api.start_run(ACTOR, {"username": ["acme"]})
        found = await reconcile.adopt_existing(
            api, ACTOR, {"username": ["new"]}, dt.datetime.now(dt.UTC)
        )
        assert found is None


@pytest.mark.slow
async def test_paging_a_25000_item_dataset_returns_every_item_once_in_order() -> None:
    cfg = sim_config.SimConfig(
        seed=9,
        time_factor=0.001,
        default_item_count=25_000,
        outcome_weights={"SUCCEEDED": 1.0},
    )
    actor = "apify~website-content-crawler"
    run_input = {"startUrls": [{"url": "https://acme.example/"}], "saveMarkdown": True}
    async with server.running(cfg) as sim, apify_client.ApifyClient(sim.base_url, None) as api:
        started = await api.start_run(actor, run_input)
        run = await api.wait_for_run(started.id, clock.Deadline.after(30))
        assert run.succeeded
        assert run.default_dataset_id is not None
        indexes: list[int] = []
        urls: list[str] = []
        async for index, item in api.iter_dataset_items(run.default_dataset_id, page_size=1000):
            indexes.append(index)
            urls.append(item["url"])
        plan = datasets.served_plan(cfg, actor, run.id, run_input, 25_000)

        assert indexes == list(range(25_000))
        assert urls == list(plan.content_ids)
        assert len(set(urls)) == 25_000
        assert sim.stats()["requests"]["items"] == 26  # 25 full pages and the empty one


async def test_served_plan_tells_content_from_poison() -> None:
    cfg = sim_config.SimConfig(
        seed=4,
        time_factor=0.001,
        default_item_count=400,
        outcome_weights={"SUCCEEDED": 1.0},
        error_item_share=0.05,
        missing_id_share=0.05,
        duplicate_share=0.1,
        empty_item_share=0.05,
    )
    actor = "clockworks~tiktok-scraper"
    run_input = {"profiles": ["acme"]}
    async with server.running(cfg) as sim, apify_client.ApifyClient(sim.base_url, None) as api:
        started = await api.start_run(actor, run_input)
        run = await api.wait_for_run(started.id, clock.Deadline.after(30))
        assert run.default_dataset_id is not None
        items = [item async for _, item in api.iter_dataset_items(run.default_dataset_id)]
        plan = sim.state.served_plan(run.id)

        assert plan == datasets.served_plan(cfg, actor, run.id, run_input, 400)
        assert len(items) == plan.item_count - plan.count("empty")  # clean skips empty rows
        assert sum(1 for item in items if "error" in item) == plan.count("error")
        with_ids = [item["id"] for item in items if "id" in item]
        assert len(with_ids) == plan.count("content") + plan.count("duplicate")
        assert list(dict.fromkeys(with_ids)) == list(plan.content_ids)
        assert plan.count("duplicate") > 0
        assert plan.poison_count > 0


async def test_two_runs_for_one_source_serve_overlapping_ids() -> None:
    cfg = sim_config.SimConfig(seed=2, error_item_share=0.2)
    actor = "apify~instagram-scraper"
    first = datasets.served_plan(cfg, actor, "runA", {"username": ["acme"]}, 50)
    second = datasets.served_plan(
        cfg, actor, "runB", {"username": ["acme"], "resultsLimit": 50}, 50
    )
    other = datasets.served_plan(cfg, actor, "runC", {"username": ["zeta"]}, 50)
    shared = set(first.content_ids) & set(second.content_ids)
    assert len(shared) > 25
    assert not set(first.content_ids) & set(other.content_ids)
