"""One account's token cannot see another account's runs, as on Apify.

A token is an account (no token is one more). A run, its INPUT record, its dataset items
(by dataset id or through the run), its log, and its abort answer another account's
token with 404 ``record-not-found``, exactly as for a run that does not exist; the abort
does nothing. Each such request is counted in ``foreignTokenRequests``. The run's own
account is served as before.
"""

from __future__ import annotations

import httpx
import pytest
from apify_client import _models

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import platform, server
from support import plain_http

RUNS = "/v2/actors/apify~instagram-scraper/runs"
BODY = {"directUrls": ["https://www.instagram.com/acme/"], "resultsLimit": 5}
TOKEN_A = "apify_api_account_a_0000000000000000"
TOKEN_B = "apify_api_account_b_0000000000000000"
A = {"Authorization": f"Bearer {TOKEN_A}"}
B = {"Authorization": f"Bearer {TOKEN_B}"}
QUICK = sim_config.SimConfig(
    time_factor=0.001,
    duration_min_seconds=5,
    duration_max_seconds=5,
    outcome_weights={"SUCCEEDED": 1.0},
    accepted_tokens=[TOKEN_A, TOKEN_B],
)


def per_run_paths(run: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Every per-run resource the simulator serves: ``name -> (method, path)``."""
    run_id, dataset_id = run["id"], run["defaultDatasetId"]
    return {
        "get_run": ("GET", f"/v2/actor-runs/{run_id}"),
        "input": ("GET", f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT"),
        "items_by_dataset": ("GET", f"/v2/datasets/{dataset_id}/items"),
        "items_by_run": ("GET", f"/v2/actor-runs/{run_id}/dataset/items"),
        "log": ("GET", f"/v2/actor-runs/{run_id}/log"),
        "log_by_id": ("GET", f"/v2/logs/{run_id}"),
        "abort": ("POST", f"/v2/actor-runs/{run_id}/abort"),
    }


def not_found(response: httpx.Response) -> str:
    assert response.status_code == 404, (response.status_code, response.text)
    error = _models.ErrorResponse.model_validate(response.json()).error
    assert error.message
    return str(error.type)


async def started_and_finished(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, str]:
    run = (await http.post(RUNS, json=BODY, headers=headers)).json()["data"]
    wait = {"waitForFinish": 10}
    done = await http.get(f"/v2/actor-runs/{run['id']}", params=wait, headers=headers)
    assert done.json()["data"]["status"] == "SUCCEEDED"
    return dict(run)


@pytest.mark.parametrize(
    "resource",
    ["get_run", "input", "items_by_dataset", "items_by_run", "log", "log_by_id", "abort"],
)
async def test_another_accounts_token_gets_record_not_found(resource: str) -> None:
    async with server.running(QUICK) as sim, plain_http.client(sim.base_url) as http:
        run = await started_and_finished(http, A)
        method, path = per_run_paths(run)[resource]
        foreign = await http.request(method, path, headers=B)
        own = await http.request(method, path, headers=A)
    assert not_found(foreign) == "record-not-found"
    assert own.status_code == 200, own.text
    stats = sim.stats()
    assert stats["foreignTokenRequests"] == 1
    summary = next(s for s in sim.state.run_summaries() if s["id"] == run["id"])
    assert summary["requestTokenTags"][str(platform.token_tag(TOKEN_B))] == 1


async def test_a_foreign_answer_is_the_answer_for_a_run_that_does_not_exist() -> None:
    async with server.running(QUICK) as sim, plain_http.client(sim.base_url) as http:
        run = await started_and_finished(http, A)
        foreign = await http.get(f"/v2/actor-runs/{run['id']}", headers=B)
        missing = await http.get("/v2/actor-runs/nosuchrun00000000", headers=B)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


async def test_another_accounts_abort_leaves_the_run_running() -> None:
    slow = sim_config.SimConfig(
        time_factor=1.0,
        duration_min_seconds=600,
        duration_max_seconds=600,
        accepted_tokens=[TOKEN_A, TOKEN_B],
    )
    async with server.running(slow) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=BODY, headers=A)).json()["data"]["id"]
        forced = await http.post(
            f"/v2/actor-runs/{run_id}/abort", params={"gracefully": "false"}, headers=B
        )
        still = await http.get(f"/v2/actor-runs/{run_id}", headers=A)
    assert not_found(forced) == "record-not-found"
    assert still.json()["data"]["status"] in ("READY", "RUNNING")
    assert sim.stats()["aborts"] == 0
    assert sim.stats()["abortRequests"] == 0


async def test_a_foreign_input_read_gets_no_signed_redirect() -> None:
    cfg = sim_config.SimConfig(
        time_factor=0.001,
        duration_min_seconds=5,
        duration_max_seconds=5,
        accepted_tokens=[TOKEN_A, TOKEN_B],
        record_redirects=True,
    )
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=BODY, headers=A)).json()["data"]["id"]
        path = f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT"
        foreign = await http.get(path, headers=B)
        own = await http.get(path, headers=A)
    assert not_found(foreign) == "record-not-found"
    assert own.status_code == 302
    assert sim.stats()["redirects"] == 1


async def test_without_auth_a_token_and_no_token_are_different_accounts() -> None:
    cfg = sim_config.SimConfig(time_factor=0.001, duration_min_seconds=5, duration_max_seconds=5)
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        anonymous = await started_and_finished(http, {})
        with_token = await http.get(f"/v2/actor-runs/{anonymous['id']}", headers=A)
        without = await http.get(f"/v2/actor-runs/{anonymous['id']}")
        listed_a = (await http.get(RUNS, headers=A)).json()["data"]["items"]
        listed_none = (await http.get(RUNS)).json()["data"]["items"]
    assert not_found(with_token) == "record-not-found"
    assert without.status_code == 200
    assert listed_a == []
    assert [item["id"] for item in listed_none] == [anonymous["id"]]
    assert sim.stats()["foreignTokenRequests"] == 1


async def test_the_starting_account_is_served_and_nothing_is_counted() -> None:
    async with server.running(QUICK) as sim, plain_http.client(sim.base_url) as http:
        run_a = await started_and_finished(http, A)
        run_b = await started_and_finished(http, B)
        for run, headers in ((run_a, A), (run_b, B)):
            for method, path in per_run_paths(run).values():
                answer = await http.request(method, path, headers=headers)
                assert answer.status_code == 200, (path, answer.text)
    assert sim.stats()["foreignTokenRequests"] == 0
