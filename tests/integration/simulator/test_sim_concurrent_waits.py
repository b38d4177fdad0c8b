"""1,000 concurrent long-poll waits against the simulator, and waits under injected faults."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt

import pytest

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import server
from kairo_ingest import clock, errors
from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import models, reconcile

TOKEN = "sim-token-for-integration-tests"
ACTOR = "clockworks~tiktok-scraper"

pytestmark = pytest.mark.slow  # thousands of waits, seconds of simulated runs


async def test_1000_concurrent_waits_finish_with_the_right_statuses() -> None:
    cfg = sim_config.SimConfig(
        seed=11,
        expected_token=TOKEN,
        time_factor=0.04,  # 60..120 simulated seconds -> 2.4..4.8 real seconds
        duration_min_seconds=60,
        duration_max_seconds=120,
        outcome_weights={"SUCCEEDED": 0.8, "FAILED": 0.1, "TIMED-OUT": 0.1},
    )
    async with (
        server.running(cfg) as sim,
        apify_client.ApifyClient(sim.base_url, TOKEN, backoff_base_seconds=0.05) as api,
    ):
        started = await asyncio.gather(
            *(
                api.start_run(ACTOR, {"profiles": [f"user{i}"], "resultsPerPage": 3})
                for i in range(1000)
            )
        )
        deadline = clock.Deadline.after(60)
        finished = await asyncio.gather(*(api.wait_for_run(run.id, deadline) for run in started))

        assert sim.state.counters.starts == 1000
        truth = {run_id: run.status for run_id, run in sim.state.runs.items()}
        assert {run.id: run.status for run in finished} == truth
        assert all(run.terminal for run in finished)
        planned = {run_id: run.plan.outcome for run_id, run in sim.state.runs.items()}
        assert truth == planned
        mix = collections.Counter(run.status for run in finished)
        assert set(mix) == {"SUCCEEDED", "FAILED", "TIMED-OUT"}
        # Long-polls, not polling: about one status request per run, never one per second.
        assert sim.state.counters.requests["get_run"] < 1.5 * 1000


async def test_with_20_percent_faults_every_run_resolves_and_starts_once() -> None:
    cfg = sim_config.SimConfig(
        seed=5,
        expected_token=TOKEN,
        time_factor=0.01,
        duration_min_seconds=5,
        duration_max_seconds=120,
        faults={"*": sim_config.FaultConfig.uniform(0.2, slow=0.05, slow_seconds=0.2)},
    )
    intents = 200

    async def one(api: apify_client.ApifyClient, i: int) -> models.RunInfo:
        """What the pipeline does: a fresh intent, then resume it while errors are retryable."""
        run_input = {"profiles": [f"brand{i}"], "resultsPerPage": 2}
        intent_at = dt.datetime.now(dt.UTC)
        run: models.RunInfo | None = None
        for attempt in range(5):
            try:
                if attempt == 0:
                    run = await reconcile.start_or_adopt(api, ACTOR, run_input, intent_at=intent_at)
                else:
                    run = await reconcile.adopt_existing(api, ACTOR, run_input, intent_at)
                    run = run or await api.start_run(ACTOR, run_input)
                break
            except errors.ApifyError as exc:
                if not exc.retryable:
                    raise
        assert run is not None
        return await api.wait_for_run(run.id, clock.Deadline.after(60))

    async with (
        server.running(cfg) as sim,
        apify_client.ApifyClient(
            sim.base_url, TOKEN, backoff_base_seconds=0.02, backoff_cap_seconds=0.5
        ) as api,
    ):
        finished = await asyncio.gather(*(one(api, i) for i in range(intents)))

        stats = sim.stats()
        assert stats["starts"] == intents  # no duplicate run, whatever was lost
        truth = {run_id: run.status for run_id, run in sim.state.runs.items()}
        assert {run.id: run.status for run in finished} == truth
        assert len({run.id for run in finished}) == intents
        faults = stats["faults"]
        lost_starts = sum(n for key, n in faults.items() if key.startswith("start:"))
        assert lost_starts > 0
        assert sum(n for key, n in faults.items() if key.startswith("get_run:")) > 0
