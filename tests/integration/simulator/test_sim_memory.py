"""A run's memory in the simulator, as on Apify (issue 10).

A run started without ``memory`` gets its actor's default memory, and that default is
what counts against the account's memory limit; a ``memory`` that Apify would refuse
(not a power of 2, below 128 MB or above 32 GB) is refused, and no run is created.
"""

from __future__ import annotations

import httpx
import pytest
from apify_client import _models

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import server
from support import plain_http

CRAWLER = "/v2/actors/apify~website-content-crawler/runs"
INSTAGRAM = "/v2/actors/apify~instagram-scraper/runs"
BODY = {"startUrls": [{"url": "https://example.com/"}]}


def memory_of(started: httpx.Response) -> int:
    assert started.status_code == 201, started.text
    run = _models.RunResponse.model_validate(started.json())
    return run.data.options.memory_mbytes


async def test_a_run_without_memory_gets_its_actors_default() -> None:
    cfg = sim_config.SimConfig(actor_memory_mbytes={"apify/website-content-crawler": 8192})
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        crawler = memory_of(await http.post(CRAWLER, json=BODY))
        other = memory_of(await http.post(INSTAGRAM, json=BODY))
        asked = memory_of(await http.post(CRAWLER, json=BODY, params={"memory": 1024}))
    assert cfg.default_memory_mbytes == 4096  # not the 1024 we count by default
    assert (crawler, other, asked) == (8192, 4096, 1024)
    disks = sorted(run.options["diskMbytes"] for run in sim.state.runs.values())
    assert disks == [2048, 8192, 16384]  # twice the memory, as on Apify


async def test_the_actors_default_counts_against_the_memory_limit() -> None:
    cfg = sim_config.SimConfig(
        max_total_memory_mbytes=4096, default_memory_mbytes=4096, time_factor=10.0
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        first = await http.post(INSTAGRAM, json=BODY)
        second = await http.post(INSTAGRAM, json=BODY)
        await http.post("/_sim/reset")
        small = [await http.post(INSTAGRAM, json=BODY, params={"memory": 1024}) for _ in range(5)]
    assert first.status_code == 201
    assert second.status_code == 400
    assert second.json()["error"]["type"] == "actor-memory-limit-exceeded"
    # Four runs of 1 GB fit in 4 GB; the fifth does not.
    assert [r.status_code for r in small] == [201, 201, 201, 201, 400]
    assert small[4].json()["error"]["type"] == "actor-memory-limit-exceeded"


@pytest.mark.parametrize("memory", ["0", "64", "100", "1000", "3000", "65536", "-1024", "lots"])
async def test_a_memory_apify_would_refuse_is_refused(memory: str) -> None:
    async with (
        server.running(sim_config.SimConfig()) as sim,
        plain_http.client(sim.base_url) as http,
    ):
        refused = await http.post(INSTAGRAM, json=BODY, params={"memory": memory})
    assert refused.status_code == 400
    error = _models.ErrorResponse.model_validate(refused.json()).error
    assert error.type == "invalid-parameter"
    assert sim.state.runs == {}
    assert sim.stats()["starts"] == 0


@pytest.mark.parametrize("memory", [128, 256, 2048, 32768])
async def test_every_power_of_2_from_128_mb_to_32_gb_is_accepted(memory: int) -> None:
    async with (
        server.running(sim_config.SimConfig()) as sim,
        plain_http.client(sim.base_url) as http,
    ):
        assert memory_of(await http.post(INSTAGRAM, json=BODY, params={"memory": memory})) == memory


async def test_actor_memory_defaults_are_set_through_the_control_endpoint() -> None:
    async with (
        server.running(sim_config.SimConfig()) as sim,
        plain_http.client(sim.base_url) as http,
    ):
        patched = await http.post(
            "/_sim/config", json={"actor_memory_mbytes": {"apify~website-content-crawler": "2048"}}
        )
        bad = await http.post("/_sim/config", json={"actor_memory_mbytes": ["x"]})
        started = await http.post(CRAWLER, json=BODY)
    assert patched.json()["actor_memory_mbytes"] == {"apify~website-content-crawler": 2048}
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid-config"
    assert memory_of(started) == 2048
