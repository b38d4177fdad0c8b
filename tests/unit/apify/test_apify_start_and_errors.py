"""Starting runs without duplicates, and the HTTP status -> typed error table."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable

import apify_fakes
import httpx
import pytest
import respx

from kairo_ingest import errors
from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import models as apify_models

Make = Callable[..., apify_client.ApifyClient]
START = "/v2/actors/apify~instagram-scraper/runs"
NOT_NOW = errors.ErrorKind.NOT_NOW


async def test_start_sends_input_and_options(router: respx.MockRouter, make_client: Make) -> None:
    route = router.post(START).mock(
        return_value=httpx.Response(201, json=apify_fakes.run_json(status="READY"))
    )
    hooks = [{"eventTypes": ["ACTOR.RUN.SUCCEEDED"], "requestUrl": "https://hook.test/x"}]
    run = await make_client().start_run(
        "apify/instagram-scraper",
        {"username": ["acme"], "resultsLimit": 5},
        timeout_secs=300,
        memory_mbytes=1024,
        max_items=5,
        max_total_charge_usd=0.5,
        webhooks=hooks,
    )
    assert run.id == "run1"
    assert run.status == "READY"
    request = route.calls[0].request
    assert json.loads(request.content) == {"username": ["acme"], "resultsLimit": 5}
    params = request.url.params
    assert params["timeout"] == "300"
    assert params["memory"] == "1024"
    assert params["maxItems"] == "5"
    assert params["maxTotalChargeUsd"] == "0.5"
    assert json.loads(base64.b64decode(params["webhooks"])) == hooks


@pytest.mark.parametrize(
    ("usd", "sent"),
    [(None, None), (0.00001, "0.00001"), (2.0, "2.0"), (1e6, "1000000.0"), (0.1 + 0.2, None)],
    ids=["unset", "small", "whole", "largest", "float-noise"],
)
async def test_the_max_charge_is_sent_as_a_plain_decimal(
    router: respx.MockRouter, make_client: Make, usd: float | None, sent: str | None
) -> None:
    route = router.post(START).mock(
        return_value=httpx.Response(201, json=apify_fakes.run_json(status="READY"))
    )
    await make_client().start_run("apify/instagram-scraper", {}, max_total_charge_usd=usd)
    params = route.calls[0].request.url.params
    if usd is None:
        assert "maxTotalChargeUsd" not in params
    else:
        assert float(params["maxTotalChargeUsd"]) == usd
        assert "e" not in params["maxTotalChargeUsd"].lower()
        if sent is not None:
            assert params["maxTotalChargeUsd"] == sent


@pytest.mark.parametrize(
    ("options", "memory"),
    [
        ({"memoryMbytes": 4096, "diskMbytes": 8192}, 4096),
        ({}, None),
        (None, None),
        ({"memoryMbytes": "4096"}, None),
        ({"memoryMbytes": True}, None),
        ({"memoryMbytes": 0}, None),
    ],
    ids=["reported", "no-field", "no-options", "string", "bool", "zero"],
)
def test_the_runs_memory_is_read_from_its_options(options: object, memory: int | None) -> None:
    data: dict[str, object] = {"id": "r", "status": "READY"}
    if options is not None:
        data["options"] = options
    assert apify_models.parse_run(data, operation="test").memory_mbytes == memory


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"error": {"type": "internal-server-error"}}),
        httpx.Response(503, text="<html>busy</html>"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadTimeout("timed out"),
        httpx.Response(201, text="<html>proxy page</html>"),
        httpx.Response(201, content=b'{"data": {"id": "ru'),
    ],
    ids=["500", "503-html", "dropped", "read-timeout", "201-html", "201-truncated"],
)
async def test_start_that_may_have_reached_apify_is_not_resent(
    router: respx.MockRouter, make_client: Make, failure: httpx.Response | Exception
) -> None:
    route = router.post(START).mock(side_effect=[failure])
    with pytest.raises(errors.ApifyStartUnknownError) as caught:
        await make_client().start_run("apify~instagram-scraper", {"a": 1})
    assert route.call_count == 1
    assert caught.value.retryable
    assert isinstance(caught.value, errors.ApifyTransientError)


@pytest.mark.parametrize(
    "first",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.Response(429, json={"error": {"type": "rate-limit-exceeded"}}),
    ],
    ids=["connect-error", "connect-timeout", "429"],
)
async def test_start_rejected_before_reaching_apify_is_retried(
    router: respx.MockRouter, make_client: Make, first: httpx.Response | Exception
) -> None:
    route = router.post(START).mock(
        side_effect=[first, httpx.Response(201, json=apify_fakes.run_json(status="READY"))]
    )
    run = await make_client().start_run("apify~instagram-scraper", {"a": 1})
    assert run.status == "READY"
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (
            httpx.Response(400, json={"error": {"type": "concurrent-runs-limit-exceeded"}}),
            errors.ErrorKind.NOT_NOW,
        ),
        (
            httpx.Response(400, json={"error": {"type": "actor-memory-limit-exceeded"}}),
            errors.ErrorKind.NOT_NOW,
        ),
        (
            httpx.Response(403, json={"error": {"type": "concurrent-runs-limit-exceeded"}}),
            errors.ErrorKind.NOT_NOW,
        ),
    ],
    ids=["concurrency", "memory", "concurrency-403"],
)
async def test_start_not_now_is_a_snooze_without_retry(
    router: respx.MockRouter, make_client: Make, response: httpx.Response, kind: errors.ErrorKind
) -> None:
    route = router.post(START).mock(return_value=response)
    with pytest.raises(errors.ApifyNotNowError) as caught:
        await make_client().start_run("apify~instagram-scraper", {"a": 1})
    assert caught.value.kind is kind
    assert caught.value.snooze
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("status", "body", "error_class", "retryable"),
    [
        (
            400,
            {"error": {"type": "invalid-input", "message": "bad"}},
            "ApifyInvalidInputError",
            False,
        ),
        (401, {"error": {"type": "token-not-valid"}}, "ApifyAuthError", False),
        (403, {"error": {"type": "insufficient-permissions"}}, "ApifyAuthError", False),
        (404, {"error": {"type": "record-not-found"}}, "ApifyNotFoundError", False),
        (409, {"error": {"type": "conflict"}}, "ApifyInvalidInputError", False),
        (500, {"error": {"type": "internal-server-error"}}, "ApifyTransientError", True),
        (502, None, "ApifyTransientError", True),
        (503, None, "ApifyTransientError", True),
    ],
)
async def test_http_status_maps_to_a_typed_error(
    router: respx.MockRouter,
    make_client: Make,
    status: int,
    body: dict[str, object] | None,
    error_class: str,
    retryable: bool,
) -> None:
    response = httpx.Response(status, json=body) if body else httpx.Response(status, text="down")
    route = router.get("/v2/actor-runs/run1").mock(return_value=response)
    with pytest.raises(errors.ApifyError) as caught:
        await make_client().get_run("run1")
    exc = caught.value
    assert type(exc).__name__ == error_class
    assert exc.retryable is retryable
    assert exc.status_code == status
    if body:
        assert exc.apify_type == body["error"]["type"]  # type: ignore[index]
    assert route.call_count == (apify_client.MAX_ATTEMPTS if retryable else 1)


async def test_error_messages_are_short(router: respx.MockRouter, make_client: Make) -> None:
    long = {"error": {"type": "invalid-input", "message": "x" * 20_000}}
    router.get("/v2/actor-runs/run1").mock(return_value=httpx.Response(400, json=long))
    with pytest.raises(errors.ApifyInvalidInputError) as caught:
        await make_client().get_run("run1")
    assert len(caught.value.message) <= errors.MAX_MESSAGE_CHARS


async def test_get_run_input_missing_is_none(router: respx.MockRouter, make_client: Make) -> None:
    router.get("/v2/actor-runs/run1/key-value-store/records/INPUT").mock(
        return_value=httpx.Response(404, json={"error": {"type": "record-not-found"}})
    )
    router.get("/v2/actor-runs/run2/key-value-store/records/INPUT").mock(
        return_value=httpx.Response(200, json={"username": ["acme"]})
    )
    api = make_client()
    assert await api.get_run_input("run1") is None
    assert await api.get_run_input("run2") == {"username": ["acme"]}


async def test_list_runs_passes_filters(router: respx.MockRouter, make_client: Make) -> None:
    route = router.get(START).mock(
        return_value=httpx.Response(
            200,
            json={
                "data": {
                    "total": 1,
                    "offset": 0,
                    "limit": 1000,
                    "count": 1,
                    "desc": True,
                    "items": [apify_fakes.run_json(status="SUCCEEDED")["data"]],
                }
            },
        )
    )
    runs = await make_client().list_runs(
        "apify~instagram-scraper",
        started_after=dt.datetime(2026, 1, 7, 12, 0, tzinfo=dt.UTC),
        status="SUCCEEDED",
    )
    assert [run.status for run in runs] == ["SUCCEEDED"]
    params = route.calls[0].request.url.params
    assert params["startedAfter"] == "2026-01-07T12:00:00.000Z"
    assert params["status"] == "SUCCEEDED"
    assert params["desc"] == "true"
    assert params["limit"] == "1000"
