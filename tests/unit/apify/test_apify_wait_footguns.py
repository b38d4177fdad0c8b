"""The footguns of the old polling loop, one test each, against a respx transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import apify_fakes
import httpx
import pytest
import respx
import structlog

from kairo_ingest import clock, errors
from kairo_ingest.apify import client as apify_client
from support import outcomes

FakeClock = apify_fakes.FakeClock
SleepRecorder = apify_fakes.SleepRecorder
run_json = apify_fakes.run_json


Make = Callable[..., apify_client.ApifyClient]


def advancing(fake: FakeClock, *statuses: str) -> Callable[[httpx.Request], httpx.Response]:
    """A long-poll answer that 'takes' the waitForFinish asked for, on the fake clock."""
    remaining = list(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        fake.now += int(request.url.params.get("waitForFinish", "0"))
        status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return httpx.Response(200, json=run_json(status=status))

    return answer


async def test_deadline_is_not_overshot_by_a_slow_response(
    router: respx.MockRouter, make_client: Make
) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()  # the server never answers
        raise AssertionError("unreachable")

    router.get("/v2/actor-runs/run1").mock(side_effect=hang)
    api = make_client(sleep=asyncio.sleep, deadline_slack_seconds=1.0)
    deadline = clock.Deadline.after(0.3)
    started = time.monotonic()
    with pytest.raises(errors.ApifyTimeoutError):
        await api.wait_for_run("run1", deadline)
    assert time.monotonic() - started < 0.3 + 1.0  # deadline + slack: a correctness bound


async def test_wait_for_finish_is_min_of_60_and_seconds_left(
    router: respx.MockRouter, make_client: Make
) -> None:
    fake = FakeClock()
    route = router.get("/v2/actor-runs/run1").mock(side_effect=advancing(fake, "RUNNING"))
    api = make_client(clock=fake)
    with pytest.raises(errors.ApifyTimeoutError):
        await api.wait_for_run("run1", clock.Deadline(fake.now + 125.5, fake))
    asked = [int(call.request.url.params["waitForFinish"]) for call in route.calls]
    assert asked == [60, 60, 5, 0]  # then the last half second passes


async def test_5xx_or_dropped_connection_mid_wait_is_retried_and_the_wait_continues(
    router: respx.MockRouter, make_client: Make, sleeps: SleepRecorder
) -> None:
    route = router.get("/v2/actor-runs/run1").mock(
        side_effect=[
            httpx.Response(200, json=run_json(status="RUNNING")),
            httpx.Response(503, text="Service Unavailable"),
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            httpx.ReadTimeout("read timed out"),
            httpx.Response(200, json=run_json(status="SUCCEEDED")),
        ]
    )
    fake = FakeClock()  # the answers take no time: the early-answer pause is exactly 1 s
    api = make_client(clock=fake)
    run = await outcomes.value_of(api.wait_for_run("run1", clock.Deadline(fake.now + 120, fake)))
    assert run.status == "SUCCEEDED"
    assert run.succeeded
    assert run.terminal
    assert route.call_count == 5
    # First the pause after the early RUNNING answer (min_poll_interval_seconds, through
    # the injected sleep, never a blocking one), then one backoff per failed attempt:
    # the n-th in [D, 2D] with D = 0.5 * 2**(n-1).
    pause, *backoffs = sleeps.calls
    assert pause == 1.0
    assert len(backoffs) == 3
    for attempt, slept in enumerate(backoffs):
        low = 0.5 * 2**attempt
        assert low <= slept <= 2 * low


async def test_429_backs_off_exponentially_with_jitter(
    router: respx.MockRouter, make_client: Make, sleeps: SleepRecorder
) -> None:
    limited = httpx.Response(
        429, json={"error": {"type": "rate-limit-exceeded", "message": "slow down"}}
    )
    router.get("/v2/actor-runs/run1").mock(
        side_effect=[limited, limited, limited, httpx.Response(200, json=run_json())]
    )
    run = await outcomes.value_of(make_client().get_run("run1"))
    assert run.status == "RUNNING"
    assert len(sleeps.calls) == 3
    for attempt, slept in enumerate(sleeps.calls):
        low = 0.5 * 2**attempt
        assert low <= slept <= 2 * low


async def test_429_that_never_clears_surfaces_as_snooze(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.get("/v2/actor-runs/run1").mock(
        return_value=httpx.Response(429, json={"error": {"type": "rate-limit-exceeded"}})
    )
    with pytest.raises(errors.ApifyNotNowError) as caught:
        await make_client().get_run("run1")
    assert caught.value.kind is errors.ErrorKind.RATE_LIMITED
    assert caught.value.snooze
    assert caught.value.retryable
    assert caught.value.status_code == 429
    assert caught.value.apify_type == "rate-limit-exceeded"


async def test_backoff_is_capped(
    router: respx.MockRouter, make_client: Make, sleeps: SleepRecorder
) -> None:
    router.get("/v2/actor-runs/run1").mock(return_value=httpx.Response(500))
    with pytest.raises(errors.ApifyTransientError):
        await make_client(backoff_cap_seconds=1.5).get_run("run1")
    assert sleeps.calls
    assert max(sleeps.calls) <= 1.5


async def test_html_body_is_a_typed_retryable_error(
    router: respx.MockRouter, make_client: Make
) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1>" + "x" * 5000 + "</body></html>"
    route = router.get("/v2/actor-runs/run1").mock(
        return_value=httpx.Response(200, text=html, headers={"content-type": "text/html"})
    )
    exc = await outcomes.error_of(make_client().get_run("run1"))
    assert isinstance(exc, errors.ApifyTransientError), exc
    assert exc.retryable
    assert not exc.snooze
    assert exc.kind is errors.ErrorKind.APIFY_TRANSIENT
    assert exc.status_code == 200
    assert "<html" not in exc.message
    assert len(exc.message) <= errors.MAX_MESSAGE_CHARS
    assert route.call_count == apify_client.MAX_ATTEMPTS


async def test_html_body_mid_wait_is_retried(router: respx.MockRouter, make_client: Make) -> None:
    router.get("/v2/actor-runs/run1").mock(
        side_effect=[
            httpx.Response(200, text="<html>oops</html>"),
            httpx.Response(200, content=b'{"data": {"id": "run1", "sta'),  # truncated JSON
            httpx.Response(200, json=run_json(status="FAILED")),
        ]
    )
    run = await make_client().wait_for_run("run1", clock.Deadline.after(60))
    assert run.status == "FAILED"
    assert run.terminal
    assert not run.succeeded


async def test_after_the_deadline_the_run_is_aborted_without_grace(
    router: respx.MockRouter, make_client: Make
) -> None:
    fake = FakeClock()
    router.get("/v2/actor-runs/run1").mock(side_effect=advancing(fake, "RUNNING"))
    abort = router.post("/v2/actor-runs/run1/abort").mock(
        return_value=httpx.Response(200, json=run_json(status="ABORTING"))
    )
    api = make_client(clock=fake)
    end = await api.wait_or_abort("run1", clock.Deadline(fake.now + 30, fake))
    assert end.deadline_passed
    assert not end.ended  # still RUNNING at the final look: the ledger follows it
    assert abort.call_count == 1
    assert abort.calls[0].request.url.params["gracefully"] == "false"


async def test_a_run_that_ended_at_the_deadline_is_returned_not_failed(
    router: respx.MockRouter, make_client: Make
) -> None:
    fake = FakeClock()
    router.get("/v2/actor-runs/run1").mock(side_effect=advancing(fake, "RUNNING"))
    router.post("/v2/actor-runs/run1/abort").mock(
        return_value=httpx.Response(200, json=run_json(status="SUCCEEDED"))
    )
    end = await make_client(clock=fake).wait_or_abort("run1", clock.Deadline(fake.now + 3, fake))
    assert end.run is not None
    assert end.run.status == "SUCCEEDED"


async def test_a_failed_abort_leaves_a_run_that_has_not_ended(
    router: respx.MockRouter, make_client: Make
) -> None:
    fake = FakeClock()
    router.get("/v2/actor-runs/run1").mock(side_effect=advancing(fake, "RUNNING"))
    router.post("/v2/actor-runs/run1/abort").mock(return_value=httpx.Response(403))
    end = await make_client(clock=fake).wait_or_abort("run1", clock.Deadline(fake.now + 3, fake))
    assert end.deadline_passed
    assert end.run is not None
    assert end.run.status == "RUNNING"
    assert not end.ended


async def test_unknown_status_does_not_crash_and_is_logged(
    router: respx.MockRouter, make_client: Make
) -> None:
    fake = FakeClock()
    router.get("/v2/actor-runs/run1").mock(side_effect=advancing(fake, "HIBERNATING", "SUCCEEDED"))
    with structlog.testing.capture_logs() as logs:
        run = await make_client(clock=fake).wait_for_run(
            "run1", clock.Deadline(fake.now + 300, fake)
        )
    assert run.status == "SUCCEEDED"
    unknown = [entry for entry in logs if entry["event"] == "apify_unknown_status"]
    assert unknown
    assert unknown[0]["status"] == "HIBERNATING"


async def test_transitional_statuses_keep_waiting(
    router: respx.MockRouter, make_client: Make
) -> None:
    fake = FakeClock()
    router.get("/v2/actor-runs/run1").mock(
        side_effect=advancing(fake, "READY", "TIMING-OUT", "ABORTING", "TIMED-OUT")
    )
    run = await make_client(clock=fake).wait_for_run("run1", clock.Deadline(fake.now + 600, fake))
    assert run.status == "TIMED-OUT"


async def test_404_while_waiting_is_permanent(router: respx.MockRouter, make_client: Make) -> None:
    router.get("/v2/actor-runs/nope").mock(
        return_value=httpx.Response(
            404, json={"error": {"type": "record-not-found", "message": "Actor run was not found"}}
        )
    )
    fake = FakeClock()
    with pytest.raises(errors.ApifyNotFoundError) as caught:
        await make_client(clock=fake).wait_for_run("nope", clock.Deadline(fake.now + 600, fake))
    assert caught.value.apify_type == "record-not-found"
    assert fake.now >= 1000 + apify_client.NOT_FOUND_GRACE_SECONDS  # only after the grace
    assert not caught.value.retryable
