"""Every simulator answer on the endpoints we use matches the official client's models.

``apify_client._models`` is generated from Apify's OpenAPI description; its models allow
extra fields, so on top of validating we require every key the simulator sends to be a
field the model knows (recursively). A renamed field then fails twice: the required
original is missing and the new name is unknown.
"""

from __future__ import annotations

import typing
from typing import Any

import httpx
import pydantic
import pytest
from apify_client import _literals, _models

from kairo_ingest.simulator import config as sim_config
from kairo_ingest.simulator import server

RUNS = "/v2/actors/apify~instagram-scraper/runs"
SENT = {"directUrls": ["https://www.instagram.com/acme/"], "resultsLimit": 12}
PAGINATION_HEADERS = ("total", "offset", "limit", "count", "desc")


def literal_values(alias: Any) -> frozenset[str]:
    """The strings of a ``Literal[...] | str`` alias from ``apify_client._literals``."""
    values: set[str] = set()
    for arg in typing.get_args(alias):
        if typing.get_origin(arg) is typing.Literal:
            values.update(typing.get_args(arg))
    return frozenset(values)


ERROR_TYPES = literal_values(_literals.ErrorType)
STATUSES = literal_values(_literals.ActorJobStatus)


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    found: list[type[pydantic.BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def unknown_keys(model: type[pydantic.BaseModel], value: Any, where: str = "") -> list[str]:
    """Keys of ``value`` (recursively) that ``model`` has no field for."""
    if not isinstance(value, dict):
        return []
    hints = typing.get_type_hints(model, globalns=vars(_models))  # resolves forward refs
    aliases = {(info.alias or name): name for name, info in model.model_fields.items()}
    problems: list[str] = []
    for key, item in value.items():
        name = aliases.get(key)
        if name is None:
            problems.append(f"{where}{key}")
            continue
        for nested in _models_in(hints[name]):
            items = item if isinstance(item, list) else [item]
            for element in items:
                problems += unknown_keys(nested, element, f"{where}{key}.")
    return problems


def conform(model: type[pydantic.BaseModel], body: Any) -> pydantic.BaseModel:
    parsed = model.model_validate(body)
    assert unknown_keys(model, body) == []
    return parsed


def conform_error(response: httpx.Response) -> str:
    parsed = conform(_models.ErrorResponse, response.json())
    assert isinstance(parsed, _models.ErrorResponse)
    kind = parsed.error.type
    assert kind in ERROR_TYPES, kind
    assert parsed.error.message
    return str(kind)


PLATFORM = sim_config.SimConfig(
    time_factor=0.001,
    duration_min_seconds=5,
    duration_max_seconds=5,
    empty_item_share=0.2,
    input_defaults=True,
    record_redirects=True,
    timing_out_seconds=0.2,
    limit_error_statuses=[400, 402, 403],
    abort_grace_seconds=0.2,
)


async def test_run_list_and_abort_answers_conform() -> None:
    async with server.running(PLATFORM) as sim, httpx.AsyncClient(base_url=sim.base_url) as http:
        started = await http.post(RUNS, json=SENT)
        assert started.status_code == 201
        run = conform(_models.RunResponse, started.json())
        assert isinstance(run, _models.RunResponse)
        run_id = run.data.id
        got = await http.get(f"/v2/actor-runs/{run_id}", params={"waitForFinish": 10})
        finished = conform(_models.RunResponse, got.json())
        assert isinstance(finished, _models.RunResponse)
        assert finished.data.finished_at is not None
        other = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        aborting = await http.post(f"/v2/actor-runs/{other}/abort", params={"gracefully": "true"})
        conform(_models.RunResponse, aborting.json())
        listed = await http.get(RUNS, params={"desc": "true", "limit": 10})
        runs = conform(_models.ListOfRunsResponse, listed.json())
        assert isinstance(runs, _models.ListOfRunsResponse)
        assert {item.id for item in runs.data.items} == {run_id, other}
    assert {run.data.status, finished.data.status} <= STATUSES


async def test_a_run_started_with_a_max_charge_conforms() -> None:
    async with server.running(PLATFORM) as sim, httpx.AsyncClient(base_url=sim.base_url) as http:
        started = await http.post(RUNS, json=SENT, params={"maxTotalChargeUsd": "0.001"})
        run = conform(_models.RunResponse, started.json())
        assert isinstance(run, _models.RunResponse)
        got = await http.get(f"/v2/actor-runs/{run.data.id}", params={"waitForFinish": 10})
        finished = conform(_models.RunResponse, got.json())
    assert isinstance(finished, _models.RunResponse)
    assert finished.data.options is not None
    assert finished.data.options.max_total_charge_usd == 0.001
    assert finished.data.status == "SUCCEEDED"


async def test_error_envelopes_conform() -> None:
    cfg = sim_config.SimConfig(
        expected_token="t",
        max_concurrent_runs=1,
        limit_error_statuses=[400, 402, 403],
        max_total_memory_mbytes=4096,
        faults={"get_run": sim_config.FaultConfig(error_429=0.5, error_500=0.5)},
    )
    auth = {"Authorization": "Bearer t"}
    async with server.running(cfg) as sim, httpx.AsyncClient(base_url=sim.base_url) as http:
        kinds = {conform_error(await http.get("/v2/actor-runs/none"))}  # no token
        kinds.add(
            conform_error(
                await http.get("/v2/actor-runs/none", headers={"Authorization": "Bearer x"})
            )
        )
        kinds.add(conform_error(await http.get("/v2/datasets/none/items", headers=auth)))
        kinds.add(conform_error(await http.delete(RUNS, headers=auth)))
        kinds.add(conform_error(await http.get("/v2/nothing-here", headers=auth)))
        assert (await http.post(RUNS, json=SENT, headers=auth)).status_code == 201
        kinds.add(conform_error(await http.post(RUNS, json=SENT, headers=auth)))
        kinds.add(conform_error(await http.post(RUNS, params={"memory": 64}, headers=auth)))
        charge = {"maxTotalChargeUsd": "-1"}
        kinds.add(conform_error(await http.post(RUNS, params=charge, headers=auth)))
        await http.post("/_sim/config", json={"max_concurrent_runs": None})
        kinds.add(conform_error(await http.post(RUNS, params={"memory": 8192}, headers=auth)))
        for _ in range(12):
            kinds.add(conform_error(await http.get("/v2/actor-runs/x", headers=auth)))
    assert kinds >= {
        "token-not-provided",
        "user-or-token-not-found",
        "record-not-found",
        "method-not-allowed",
        "page-not-found",
        "concurrent-runs-limit-exceeded",
        "actor-memory-limit-exceeded",
        "invalid-parameter",
        "rate-limit-exceeded",
        "internal-server-error",
    }


async def test_record_not_found_during_visibility_lag_conforms() -> None:
    cfg = sim_config.SimConfig(visibility_lag_seconds=3600)
    async with server.running(cfg) as sim, httpx.AsyncClient(base_url=sim.base_url) as http:
        run_id = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        hidden = await http.get(f"/v2/actor-runs/{run_id}")
        listed = conform(_models.ListOfRunsResponse, (await http.get(RUNS)).json())
    assert hidden.status_code == 404
    assert conform_error(hidden) == "record-not-found"
    assert isinstance(listed, _models.ListOfRunsResponse)
    assert listed.data.items == []


@pytest.mark.parametrize("clean", ["true", "false"])
async def test_dataset_page_headers_conform(clean: str) -> None:
    async with server.running(PLATFORM) as sim, httpx.AsyncClient(base_url=sim.base_url) as http:
        run = (await http.post(RUNS, json=SENT)).json()["data"]
        await http.get(f"/v2/actor-runs/{run['id']}", params={"waitForFinish": 10})
        page = await http.get(
            f"/v2/datasets/{run['defaultDatasetId']}/items",
            params={"format": "json", "clean": clean, "offset": 2, "limit": 5},
        )
    items = page.json()
    assert isinstance(items, list)
    headers = {name: page.headers[f"x-apify-pagination-{name}"] for name in PAGINATION_HEADERS}
    # What the official client builds its DatasetItemsPage from.
    assert int(headers["total"]) >= int(headers["offset"]) == 2
    assert int(headers["limit"]) == 5
    assert headers["desc"].lower() in ("true", "false")
    count = int(headers["count"])
    assert count == 5  # rows processed, whatever clean skipped
    assert len(items) <= count
