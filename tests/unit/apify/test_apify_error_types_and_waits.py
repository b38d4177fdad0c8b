"""Classification by ``error.type``, waiting through lag, the deadline, redirects.

Old behaviours each test catches: limit errors classified by status (403 -> auth, 402
billing -> snoozed forever), a 404 just after a start failing the source, a graceful
abort at the deadline with no final look, and redirects treated as transient errors.
"""

from __future__ import annotations

import typing
from collections.abc import Callable

import apify_fakes
import httpx
import pytest
import respx
from apify_client import _literals

from kairo_ingest import clock, errors
from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import mapping
from support import outcomes

Make = Callable[..., apify_client.ApifyClient]
FakeClock = apify_fakes.FakeClock
START = "/v2/actors/apify~instagram-scraper/runs"
NOT_FOUND = {"error": {"type": "record-not-found", "message": "Actor run was not found"}}


def _official_error_types() -> frozenset[str]:
    values: set[str] = set()
    for arg in typing.get_args(_literals.ErrorType):
        if typing.get_origin(arg) is typing.Literal:
            values.update(typing.get_args(arg))
    return frozenset(values)


NAMED = (
    mapping.RATE_LIMIT_TYPES
    | mapping.NOT_NOW_TYPES
    | mapping.BILLING_TYPES
    | mapping.PERMISSION_TYPES
    | mapping.NOT_FOUND_TYPES
)


def test_every_error_type_we_name_exists_in_the_official_client() -> None:
    assert _official_error_types() >= NAMED


def _expected(apify_type: str) -> tuple[type[errors.ApifyError], bool]:
    """(error class, snooze) the type alone decides."""
    if apify_type in mapping.RATE_LIMIT_TYPES | mapping.NOT_NOW_TYPES:
        return errors.ApifyNotNowError, True
    if apify_type in mapping.BILLING_TYPES:
        return errors.ApifyBillingError, False
    if apify_type in mapping.PERMISSION_TYPES:
        return errors.ApifyAuthError, False
    return errors.ApifyNotFoundError, False


@pytest.mark.parametrize("status", [400, 402, 403, 404])
@pytest.mark.parametrize("apify_type", sorted(NAMED))
async def test_every_named_type_is_classified_by_type_whatever_the_status(
    router: respx.MockRouter, make_client: Make, apify_type: str, status: int
) -> None:
    body = {"error": {"type": apify_type, "message": "Refused"}}
    router.post(START).mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(errors.ApifyError) as caught:
        await make_client().start_run("apify~instagram-scraper", {"a": 1})
    error_class, snooze = _expected(apify_type)
    assert type(caught.value) is error_class
    assert caught.value.snooze is snooze
    if not snooze:
        assert not caught.value.retryable
        assert apify_type in caught.value.message  # the stored message names the type


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, errors.ApifyInvalidInputError),
        (401, errors.ApifyAuthError),
        (402, errors.ApifyBillingError),
        (403, errors.ApifyAuthError),
        (404, errors.ApifyNotFoundError),
        (409, errors.ApifyInvalidInputError),
        (429, errors.ApifyNotNowError),
    ],
)
async def test_an_unknown_type_falls_back_to_the_status(
    router: respx.MockRouter, make_client: Make, status: int, error_class: type
) -> None:
    body = {"error": {"type": "some-new-type", "message": "?"}}
    router.post(START).mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(errors.ApifyError) as caught:
        await make_client(backoff_base_seconds=0.0).start_run("apify~instagram-scraper", {})
    assert type(caught.value) is error_class


async def test_a_404_just_after_a_start_is_waited_through(
    router: respx.MockRouter, make_client: Make
) -> None:
    """Old: the first 404 (replica lag) failed the source; the run went on unwatched."""
    fake = FakeClock()
    route = router.get("/v2/actor-runs/run1").mock(
        side_effect=[
            httpx.Response(404, json=NOT_FOUND),
            httpx.Response(404, json=NOT_FOUND),
            httpx.Response(200, json=apify_fakes.run_json(status="SUCCEEDED")),
        ]
    )
    api = make_client(clock=fake)
    end = await outcomes.value_of(api.wait_or_abort("run1", clock.Deadline(fake.now + 600, fake)))
    assert end.run is not None
    assert end.run.status == "SUCCEEDED"
    assert not end.deadline_passed
    assert route.call_count == 3


async def test_the_deadline_abort_is_hard_and_a_last_moment_success_is_kept(
    router: respx.MockRouter, make_client: Make
) -> None:
    """Old: ``gracefully=true`` and, when the abort failed, TIMED-OUT without a last look,
    so a run that succeeded at the last moment was paid for and run again."""
    fake = FakeClock()
    aborted = False

    def get(request: httpx.Request) -> httpx.Response:
        fake.now += int(request.url.params.get("waitForFinish", "0"))
        # The run succeeds at the last moment: only a look after the abort sees it.
        status = "SUCCEEDED" if aborted else "RUNNING"
        return httpx.Response(200, json=apify_fakes.run_json(status=status))

    def abort_request(request: httpx.Request) -> httpx.Response:
        nonlocal aborted
        aborted = True
        return httpx.Response(500, json={"error": {"type": "internal-server-error"}})

    router.get("/v2/actor-runs/run1").mock(side_effect=get)
    abort = router.post("/v2/actor-runs/run1/abort").mock(side_effect=abort_request)
    api = make_client(clock=fake)
    end = await outcomes.value_of(api.wait_or_abort("run1", clock.Deadline(fake.now + 30, fake)))
    assert end.run is not None
    assert end.run.status == "SUCCEEDED"
    assert abort.calls[0].request.url.params["gracefully"] == "false"


async def test_a_run_aborted_at_the_deadline_comes_back_with_its_final_cost(
    router: respx.MockRouter, make_client: Make
) -> None:
    """Old: the abort raised a timeout and the run was recorded TIMED-OUT without its cost.
    A forced abort passes through ABORTING: the final look waits for the end."""
    fake = FakeClock()
    aborted = False

    def get(request: httpx.Request) -> httpx.Response:
        wait = int(request.url.params.get("waitForFinish", "0"))
        fake.now += wait
        if not aborted:
            return httpx.Response(200, json=apify_fakes.run_json(status="RUNNING"))
        assert wait > 0, "the final look waits for the run's end"
        ended = apify_fakes.run_json(status="ABORTED", usageTotalUsd=0.0123)
        return httpx.Response(200, json=ended)

    def abort_request(request: httpx.Request) -> httpx.Response:
        nonlocal aborted
        aborted = True
        return httpx.Response(200, json=apify_fakes.run_json(status="ABORTING"))

    router.get("/v2/actor-runs/run1").mock(side_effect=get)
    router.post("/v2/actor-runs/run1/abort").mock(side_effect=abort_request)
    end = await make_client(clock=fake).wait_or_abort("run1", clock.Deadline(fake.now + 3, fake))
    assert end.deadline_passed
    assert end.ended
    assert end.run is not None
    assert end.run.status == "ABORTED"
    assert end.run.usage_total_usd == 0.0123


async def test_an_input_record_redirect_is_followed_without_the_token(
    make_client: Make,
) -> None:
    """Old: the 302 to a signed storage URL was a transient error; reconciling failed."""
    signed = "https://storage.apify.test/records/INPUT?signature=abc"
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "storage.apify.test":
            if "authorization" in request.headers:
                return httpx.Response(400, text="Only one auth mechanism allowed")
            return httpx.Response(200, json={"a": 1})
        return httpx.Response(302, headers={"Location": signed})

    api = make_client(transport=httpx.MockTransport(handler))
    assert await outcomes.value_of(api.get_run_input("run1")) == {"a": 1}
    assert seen[0].headers["authorization"] == f"Bearer {apify_fakes.TOKEN}"
    assert [str(r.url) for r in seen[1:]] == [signed]
    assert "authorization" not in seen[1].headers  # the token never reaches another host
    assert apify_fakes.TOKEN not in str(seen[1].url)


@pytest.mark.parametrize(
    "location",
    ["http://storage.apify.test/records/INPUT?signature=abc", "http://api.apify.test/v2/x"],
    ids=["another-host", "same-host"],
)
async def test_a_storage_redirect_from_https_down_to_http_is_refused(
    make_client: Make, location: str
) -> None:
    """Never from https down to http: the signed URL (a credential) would cross the
    network in clear. The 3xx is reported as the error it is, and nothing is sent."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.scheme == "http":
            return httpx.Response(200, json={"a": 1})
        return httpx.Response(302, headers={"Location": location})

    api = make_client(transport=httpx.MockTransport(handler))
    exc = await outcomes.error_of(api.get_run_input("run1"))
    assert [r.url.scheme for r in seen if r.url.scheme != "https"] == []
    assert isinstance(exc, errors.ApifyError), exc
    assert exc.status_code == 302


async def test_redirects_are_not_followed_for_api_calls(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.get("/v2/actor-runs/run1").mock(
        return_value=httpx.Response(302, headers={"Location": "https://elsewhere.test/x"})
    )
    elsewhere = router.get("https://elsewhere.test/x").mock(return_value=httpx.Response(200))
    with pytest.raises(errors.ApifyTransientError):
        await make_client().get_run("run1")
    assert elsewhere.call_count == 0
