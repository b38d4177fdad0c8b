"""Reconciliation: find our own run on a platform that fills defaults and lags.

Each test fails on the old code (named in its docstring): equality matching, no
``startedBefore``, an immediate re-list, up to three sends, raw errors while reconciling.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import apify_fakes
import httpx
import pytest
import respx

from kairo_ingest import errors
from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import reconcile
from support import outcomes

Make = Callable[..., apify_client.ApifyClient]
ACTOR = "clockworks~tiktok-scraper"
RUNS = f"/v2/actors/{ACTOR}/runs"
OURS = {"profiles": ["acme"], "resultsPerPage": 5}
DEFAULTS = {"shouldDownloadVideos": False, "proxyCountryCode": "None"}
INTENT_AT = dt.datetime(2026, 1, 7, 12, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 1, 7, 12, 0, 30, tzinfo=dt.UTC)
LOST = httpx.RemoteProtocolError("Server disconnected without sending a response.")


def listing(*run_ids: str) -> httpx.Response:
    items = [apify_fakes.run_json(run_id, "RUNNING")["data"] for run_id in run_ids]
    data = {"total": len(items), "offset": 0, "limit": 1000, "count": len(items), "desc": False}
    return httpx.Response(200, json={"data": data | {"items": items}})


def stored(router: respx.MockRouter, run_id: str, value: Any) -> None:
    router.get(f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT").mock(
        return_value=httpx.Response(200, json=value)
    )
    router.get(f"/v2/actor-runs/{run_id}").mock(
        return_value=httpx.Response(200, json=apify_fakes.run_json(run_id, "RUNNING"))
    )


async def test_a_stored_input_with_platform_defaults_is_ours(
    router: respx.MockRouter, make_client: Make
) -> None:
    """Old: adopted only when the stored INPUT *equalled* ours, so a run whose INPUT held
    the actor's defaults was never recognised and a second run was started."""
    start = router.post(RUNS).mock(side_effect=LOST)
    router.get(RUNS).mock(return_value=listing("ours"))
    stored(router, "ours", {**DEFAULTS, **OURS})
    run = await outcomes.value_of(
        reconcile.start_or_adopt(make_client(), ACTOR, OURS, intent_at=INTENT_AT)
    )
    assert run.id == "ours"
    assert start.call_count == 1


@pytest.mark.parametrize(
    "value",
    [
        {"profiles": ["acme", "other"], "resultsPerPage": 5},
        {"profiles": ["acme"], "resultsPerPage": True},  # JSON true is not 1
        {"profiles": ["acme"]},
    ],
    ids=["other-list", "bool-for-int", "missing-field"],
)
def test_containment_needs_every_sent_field_with_an_equal_value(value: dict[str, Any]) -> None:
    assert reconcile.input_matches({**OURS, **DEFAULTS}, OURS)
    assert not reconcile.input_matches(value, OURS)


async def test_the_search_window_is_bounded_on_both_sides(
    router: respx.MockRouter, make_client: Make
) -> None:
    """Old: only ``startedAfter`` was sent, newest first, so a resumed intent on a busy
    actor scanned the runs started since and could miss its own."""
    listed = router.get(RUNS).mock(return_value=listing())
    await reconcile.adopt_existing(make_client(), ACTOR, OURS, INTENT_AT, now=lambda: NOW)
    params = listed.calls[0].request.url.params
    assert params["startedAfter"] == "2026-01-07T11:59:00.000Z"  # intent - slack
    assert params.get("startedBefore") == "2026-01-07T12:01:30.000Z"  # now + slack
    assert params["desc"] == "false"  # oldest first: the intent's run comes early


async def test_a_run_listed_late_is_adopted_after_settling_not_started_again(
    router: respx.MockRouter, make_client: Make, sleeps: apify_fakes.SleepRecorder
) -> None:
    """Old: re-listed at once after an unknown start, found nothing (replica lag) and sent
    the start again: with a 1 s list lag, 3 runs for one intent."""
    start = router.post(RUNS).mock(side_effect=LOST)
    router.get(RUNS).mock(side_effect=[listing(), listing(), listing("ours")])
    stored(router, "ours", OURS)
    run = await outcomes.value_of(
        reconcile.start_or_adopt(make_client(), ACTOR, OURS, intent_at=INTENT_AT)
    )
    assert run.id == "ours"
    assert start.call_count == 1
    assert sleeps.calls == list(reconcile.SETTLE_DELAYS_SECONDS[:2])


async def test_an_input_not_visible_yet_is_read_again(
    router: respx.MockRouter, make_client: Make
) -> None:
    start = router.post(RUNS).mock(side_effect=LOST)
    router.get(RUNS).mock(return_value=listing("ours"))
    router.get("/v2/actor-runs/ours/key-value-store/records/INPUT").mock(
        side_effect=[
            httpx.Response(404, json={"error": {"type": "record-not-found", "message": "x"}}),
            httpx.Response(200, json=OURS),
        ]
    )
    router.get("/v2/actor-runs/ours").mock(
        return_value=httpx.Response(200, json=apify_fakes.run_json("ours"))
    )
    run = await reconcile.start_or_adopt(make_client(), ACTOR, OURS, intent_at=INTENT_AT)
    assert run.id == "ours"
    assert start.call_count == 1


async def test_the_start_is_sent_again_at_most_once_and_only_after_settling(
    router: respx.MockRouter, make_client: Make, sleeps: apify_fakes.SleepRecorder
) -> None:
    """Old: up to 3 sends per intent, each after a single immediate look."""
    start = router.post(RUNS).mock(side_effect=LOST)
    router.get(RUNS).mock(return_value=listing())
    with pytest.raises(errors.ApifyStartUnknownError):
        await reconcile.start_or_adopt(make_client(), ACTOR, OURS, intent_at=INTENT_AT)
    assert start.call_count == 2
    assert sum(sleeps.calls) >= 2 * 20  # tens of seconds of settling after each send


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503, text="<html>down</html>"),
        httpx.Response(401, json={"error": {"type": "user-or-token-not-found", "message": "x"}}),
        httpx.Response(403, json={"error": {"type": "insufficient-permissions", "message": "x"}}),
    ],
    ids=["5xx", "401", "403"],
)
async def test_an_error_while_reconciling_keeps_the_start_unknown(
    router: respx.MockRouter, make_client: Make, answer: httpx.Response
) -> None:
    """Old: the list call's error propagated as is; the pipeline marked the intent
    START_FAILED and a new intent started a second run although one may exist."""
    router.post(RUNS).mock(side_effect=LOST)
    router.get(RUNS).mock(return_value=answer)
    exc = await outcomes.error_of(
        reconcile.start_or_adopt(make_client(), ACTOR, OURS, intent_at=INTENT_AT)
    )
    assert isinstance(exc, errors.ApifyStartUnknownError), exc
    assert not reconcile.is_definite_refusal(exc)


async def test_a_refused_resend_keeps_the_first_start_unknown(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.post(RUNS).mock(
        side_effect=[
            LOST,
            httpx.Response(
                402, json={"error": {"type": "concurrent-runs-limit-exceeded", "message": "x"}}
            ),
        ]
    )
    router.get(RUNS).mock(return_value=listing())
    with pytest.raises(errors.ApifyStartUnknownError):
        await reconcile.start_or_adopt(make_client(), ACTOR, OURS, intent_at=INTENT_AT)


@pytest.mark.parametrize(
    ("exc", "definite"),
    [
        (errors.ApifyInvalidInputError("start_run: HTTP 400", status_code=400), True),
        (errors.ApifyBillingError("start_run: HTTP 402", status_code=402), True),
        (errors.ApifyNotNowError("start_run: HTTP 403", status_code=403), True),
        (errors.ApifyStartUnknownError("reconcile: HTTP 401", status_code=401), False),
        (errors.ApifyStartUnknownError("start_run: HTTP 502", status_code=502), False),
        (errors.ApifyTransientError("start_run: ConnectError before the request was sent"), False),
    ],
)
def test_only_a_classified_4xx_on_the_start_is_a_definite_refusal(
    exc: errors.ApifyError, definite: bool
) -> None:
    assert reconcile.is_definite_refusal(exc) is definite


def test_a_resumed_intent_settles_only_for_what_is_left() -> None:
    total = sum(reconcile.SETTLE_DELAYS_SECONDS)
    assert reconcile.settle_left(0) == list(reconcile.SETTLE_DELAYS_SECONDS)
    assert sum(reconcile.settle_left(10)) == pytest.approx(total - 10)
    assert reconcile.settle_left(total + 1) == []
