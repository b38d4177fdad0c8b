"""The token travels only in the Authorization header: never a URL, a log, an error or a repr."""

from __future__ import annotations

import logging
from collections.abc import Callable

import apify_fakes
import httpx
import pytest
import respx
import structlog

from kairo_ingest import clock, errors
from kairo_ingest.apify import client as apify_client

TOKEN = apify_fakes.TOKEN


async def test_token_is_never_in_an_error_or_a_log_record(
    router: respx.MockRouter,
    make_client: Callable[..., apify_client.ApifyClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo = {"error": {"type": "token-not-valid", "message": f"Token {TOKEN} is not valid"}}
    router.get("/v2/actor-runs/auth").mock(return_value=httpx.Response(401, json=echo))
    router.get("/v2/actor-runs/boom").mock(
        return_value=httpx.Response(500, text=f"upstream said Authorization: Bearer {TOKEN}")
    )
    router.get("/v2/actor-runs/drop").mock(
        side_effect=httpx.ReadError(f"connection reset while sending token={TOKEN}")
    )
    router.post("/v2/actors/a~b/runs").mock(
        side_effect=httpx.RemoteProtocolError(f"lost answer for {TOKEN}")
    )
    router.get("/v2/actor-runs/slow").mock(return_value=httpx.Response(200, text=f"<p>{TOKEN}"))
    api = make_client()
    raised: list[errors.KairoError] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        for call in (
            lambda: api.get_run("auth"),
            lambda: api.get_run("boom"),
            lambda: api.get_run("drop"),
            lambda: api.start_run("a/b", {"q": 1}),
            lambda: api.wait_for_run("slow", clock.Deadline.after(5)),
        ):
            with pytest.raises(errors.ApifyError) as caught:
                await call()
            raised.append(caught.value)

    assert len(raised) == 5
    for exc in raised:
        assert TOKEN not in str(exc)
        assert TOKEN not in repr(exc)
        assert TOKEN not in errors.describe(exc)
    assert logs  # retries were logged
    assert TOKEN not in repr(logs)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert TOKEN not in caplog.text
    for call in router.calls:
        assert TOKEN not in str(call.request.url)
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(api)
    assert TOKEN not in repr(api._http.auth)


async def test_requests_carry_user_agent_and_bearer_only(
    router: respx.MockRouter, make_client: Callable[..., apify_client.ApifyClient]
) -> None:
    route = router.get("/v2/actor-runs/run1").mock(
        return_value=httpx.Response(200, json=apify_fakes.run_json())
    )
    await make_client().get_run("run1")
    request = route.calls[0].request
    assert request.headers["User-Agent"].startswith("kairo-ingest/")
    assert "token" not in request.url.params
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_no_token_sends_no_authorization(router: respx.MockRouter) -> None:
    route = router.get("/v2/actor-runs/run1").mock(
        return_value=httpx.Response(200, json=apify_fakes.run_json())
    )
    async with apify_client.ApifyClient(
        apify_fakes.BASE, None, transport=httpx.MockTransport(router.async_handler)
    ) as api:
        await api.get_run("run1")
    assert "Authorization" not in route.calls[0].request.headers
