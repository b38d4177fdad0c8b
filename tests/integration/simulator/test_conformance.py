"""Every simulator answer on the endpoints we use matches the official client's models.

``apify_client._models`` is generated from Apify's OpenAPI description; its models allow
extra fields, so on top of validating we require every key the simulator sends to be a
field the model knows (recursively). A renamed field then fails twice: the required
original is missing and the new name is unknown.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from typing import Any

import httpx
import pydantic
import pytest
from apify_client import _literals, _models

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import server
from support import plain_http

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
    problems: list[str] = []
    for key, item in value.items():
        name = _aliases(model).get(key)
        if name is None:
            problems.append(f"{where}{key}")
            continue
        nested = _models_in(hints[name])
        if not nested:
            continue
        if _is_mapping(hints[name]) and isinstance(item, dict):
            elements = list(item.values())  # ``dict[str, Model]``: its keys are free
        else:
            elements = item if isinstance(item, list) else [item]
        for element in elements:
            problems += _unknown_in_any(nested, element, f"{where}{key}.")
    return problems


def _aliases(model: type[pydantic.BaseModel]) -> dict[str, str]:
    """JSON key -> field name. A field whose annotation is a forward reference reports no
    alias, though validation applies the model's alias generator to it: apply it here."""
    generate = model.model_config.get("alias_generator")
    found: dict[str, str] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or (generate(name) if callable(generate) else None) or name
        found[alias] = name
    return found


def _is_mapping(annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict:
        return True
    return any(_is_mapping(arg) for arg in typing.get_args(annotation))


def _unknown_in_any(models: list[type[pydantic.BaseModel]], value: Any, where: str) -> list[str]:
    """The unknown keys of ``value`` for the member of a union that accepts it (a
    discriminated union such as ``pricingInfo`` has one); all of them when none does."""
    if len(models) == 1:
        return unknown_keys(models[0], value, where)
    found: list[list[str]] = []
    for model in models:
        try:
            model.model_validate(value)
        except pydantic.ValidationError:
            continue
        found.append(unknown_keys(model, value, where))
    return min(found, key=len) if found else [f"{where}(no member of the union accepts it)"]


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
    async with server.running(PLATFORM) as sim, plain_http.client(sim.base_url) as http:
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


@pytest.mark.parametrize("cap_outcome", ["SUCCEEDED", "ABORTED"])
async def test_a_run_stopped_by_its_max_charge_conforms(cap_outcome: str) -> None:
    """Finished by the actor or aborted by the platform, with its money fields."""
    cfg = dataclasses.replace(PLATFORM, charge_cap_outcome_weights={cap_outcome: 1.0})
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        started = await http.post(RUNS, json=SENT, params={"maxTotalChargeUsd": "0.01"})
        run = conform(_models.RunResponse, started.json())
        assert isinstance(run, _models.RunResponse)
        got = await http.get(f"/v2/actor-runs/{run.data.id}", params={"waitForFinish": 10})
        finished = conform(_models.RunResponse, got.json())
    assert isinstance(finished, _models.RunResponse)
    assert finished.data.options is not None
    assert finished.data.options.max_total_charge_usd == 0.01
    assert finished.data.status == cap_outcome
    assert sim.state.runs[run.data.id].plan.stopped_at_max_charge
    pricing = finished.data.pricing_info
    assert isinstance(pricing, _models.PayPerEventActorPricingInfo)
    events = pricing.pricing_per_event.actor_charge_events
    assert events is not None
    assert set(finished.data.charged_event_counts or {}) == set(events)
    assert sum((finished.data.charged_event_counts or {}).values()) > 0
    assert finished.data.usage_usd is not None
    assert finished.data.usage_total_usd is not None
    assert 0 < finished.data.usage_total_usd <= 0.01


async def test_aborting_run_objects_conform() -> None:
    """A forced abort, and a run the platform aborts at its max, both seen in ABORTING."""
    slow = dataclasses.replace(
        PLATFORM,
        time_factor=1.0,
        duration_min_seconds=600,
        duration_max_seconds=600,
        forced_abort_seconds=30.0,
    )
    async with server.running(slow) as sim, plain_http.client(sim.base_url) as http:
        plain = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        forced = await http.post(f"/v2/actor-runs/{plain}/abort", params={"gracefully": "false"})
    capped_cfg = dataclasses.replace(
        PLATFORM, forced_abort_seconds=30.0, charge_cap_outcome_weights={"ABORTED": 1.0}
    )
    async with server.running(capped_cfg) as sim, plain_http.client(sim.base_url) as http:
        capped = (await http.post(RUNS, json=SENT, params={"maxTotalChargeUsd": "0.01"})).json()
        for _ in range(2000):  # its plan reaches the max within about 5 ms
            at_cap = await http.get(f"/v2/actor-runs/{capped['data']['id']}")
            if at_cap.json()["data"]["status"] not in ("READY", "RUNNING"):
                break
            await asyncio.sleep(0.005)
    answers = [conform(_models.RunResponse, r.json()) for r in (forced, at_cap)]
    for answer in answers:
        assert isinstance(answer, _models.RunResponse)
        assert answer.data.status == "ABORTING"
        assert answer.data.finished_at is None


async def test_another_accounts_token_gets_a_conforming_record_not_found() -> None:
    cfg = dataclasses.replace(PLATFORM, accepted_tokens=["token-a", "token-b"])
    a, b = {"Authorization": "Bearer token-a"}, {"Authorization": "Bearer token-b"}
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run = (await http.post(RUNS, json=SENT, headers=a)).json()["data"]
        answers = [
            await http.get(f"/v2/actor-runs/{run['id']}", headers=b),
            await http.post(f"/v2/actor-runs/{run['id']}/abort", headers=b),
            await http.get(f"/v2/actor-runs/{run['id']}/key-value-store/records/INPUT", headers=b),
            await http.get(f"/v2/datasets/{run['defaultDatasetId']}/items", headers=b),
            await http.get(f"/v2/actor-runs/{run['id']}/log", headers=b),
        ]
    assert [r.status_code for r in answers] == [404] * 5
    assert {conform_error(r) for r in answers} == {"record-not-found"}
    assert sim.stats()["foreignTokenRequests"] == 5


async def test_error_envelopes_conform() -> None:
    cfg = sim_config.SimConfig(
        expected_token="t",
        max_concurrent_runs=1,
        limit_error_statuses=[400, 402, 403],
        max_total_memory_mbytes=4096,
        faults={"get_run": sim_config.FaultConfig(error_429=0.5, error_500=0.5)},
    )
    auth = {"Authorization": "Bearer t"}
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
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
    async with server.running(cfg) as sim, plain_http.client(sim.base_url) as http:
        run_id = (await http.post(RUNS, json=SENT)).json()["data"]["id"]
        hidden = await http.get(f"/v2/actor-runs/{run_id}")
        listed = conform(_models.ListOfRunsResponse, (await http.get(RUNS)).json())
    assert hidden.status_code == 404
    assert conform_error(hidden) == "record-not-found"
    assert isinstance(listed, _models.ListOfRunsResponse)
    assert listed.data.items == []


@pytest.mark.parametrize("clean", ["true", "false"])
async def test_dataset_page_headers_conform(clean: str) -> None:
    async with server.running(PLATFORM) as sim, plain_http.client(sim.base_url) as http:
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
