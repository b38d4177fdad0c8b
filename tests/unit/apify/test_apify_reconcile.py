"""Reconciling a start whose answer was lost: adopt the run whose INPUT matches, else start."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import apify_fakes
import httpx
import pytest
import respx

from kairo_ingest import errors
from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import reconcile

Make = Callable[..., apify_client.ApifyClient]
ACTOR = "clockworks~tiktok-scraper"
RUNS = f"/v2/actors/{ACTOR}/runs"
OURS = {"profiles": ["acme"], "resultsPerPage": 5}
INTENT_AT = dt.datetime(2026, 1, 7, 12, 0, tzinfo=dt.UTC)


def listing(*run_ids: str) -> httpx.Response:
    items = [apify_fakes.run_json(run_id, "RUNNING")["data"] for run_id in run_ids]
    data = {"total": len(items), "offset": 0, "limit": 1000, "count": len(items), "desc": True}
    return httpx.Response(200, json={"data": data | {"items": items}})


def inputs(router: respx.MockRouter, stored: dict[str, Any]) -> None:
    for run_id, value in stored.items():
        router.get(f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT").mock(
            return_value=httpx.Response(200, json=value)
        )
        router.get(f"/v2/actor-runs/{run_id}").mock(
            return_value=httpx.Response(200, json=apify_fakes.run_json(run_id, "RUNNING"))
        )


async def test_lost_start_answer_adopts_the_matching_run(
    router: respx.MockRouter, make_client: Make
) -> None:
    start = router.post(RUNS).mock(
        side_effect=httpx.RemoteProtocolError("Server disconnected without sending a response.")
    )
    listed = router.get(RUNS).mock(return_value=listing("newer", "ours", "older"))
    inputs(router, {"newer": {"profiles": ["other"]}, "ours": OURS, "older": {"x": 1}})
    run = await reconcile.start_or_adopt(
        make_client(), ACTOR, OURS, intent_at=INTENT_AT, max_items=5
    )
    assert run.id == "ours"
    assert start.call_count == 1
    params = listed.calls[0].request.url.params
    assert params["startedAfter"] == "2026-01-07T11:59:00.000Z"  # intent minus clock slack


async def test_no_matching_run_starts_again(router: respx.MockRouter, make_client: Make) -> None:
    start = router.post(RUNS).mock(
        side_effect=[
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(201, json=apify_fakes.run_json("fresh", "READY")),
        ]
    )
    router.get(RUNS).mock(return_value=listing("someone-else"))
    inputs(router, {"someone-else": {"profiles": ["other"]}})
    run = await reconcile.start_or_adopt(make_client(), ACTOR, OURS, intent_at=INTENT_AT)
    assert run.id == "fresh"
    assert start.call_count == 2
    assert json.loads(start.calls[1].request.content) == OURS


async def test_gives_up_after_max_starts_with_the_unknown_outcome(
    router: respx.MockRouter, make_client: Make
) -> None:
    start = router.post(RUNS).mock(side_effect=httpx.ReadTimeout("timed out"))
    router.get(RUNS).mock(return_value=listing())
    with pytest.raises(errors.ApifyStartUnknownError):
        await reconcile.start_or_adopt(
            make_client(), ACTOR, OURS, intent_at=INTENT_AT, max_starts=2
        )
    assert start.call_count == 2


async def test_adopt_existing_skips_runs_bound_to_other_intents(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.get(RUNS).mock(return_value=listing("taken", "free"))
    inputs(router, {"taken": OURS, "free": OURS})
    api = make_client()
    run = await reconcile.adopt_existing(api, ACTOR, OURS, INTENT_AT, exclude_run_ids={"taken"})
    assert run is not None
    assert run.id == "free"
    assert (
        await reconcile.adopt_existing(
            api, ACTOR, OURS, INTENT_AT, exclude_run_ids={"taken", "free"}
        )
        is None
    )


async def test_input_is_compared_as_apify_stores_it(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.get(RUNS).mock(return_value=listing("ours"))
    inputs(router, {"ours": {"profiles": ["acme"], "resultsPerPage": 5}})
    run = await reconcile.adopt_existing(
        make_client(), ACTOR, {"profiles": ("acme",), "resultsPerPage": 5}, INTENT_AT
    )
    assert run is not None
    assert run.id == "ours"


async def test_permanent_start_errors_are_not_reconciled(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.post(RUNS).mock(return_value=httpx.Response(401, json={"error": {"type": "x"}}))
    listed = router.get(RUNS).mock(return_value=listing())
    with pytest.raises(errors.ApifyAuthError, match="HTTP 401"):
        await reconcile.start_or_adopt(make_client(), ACTOR, OURS, intent_at=INTENT_AT)
    assert listed.call_count == 0
