"""Dataset paging: offsets advance by max(Count, len(items)), one page at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from kairo_ingest import errors
from kairo_ingest.apify import client as apify_client

Make = Callable[..., apify_client.ApifyClient]
ITEMS = "/v2/datasets/ds1/items"


def page(items: list[Any], count: int | None = None) -> httpx.Response:
    headers = {"X-Apify-Pagination-Count": str(len(items) if count is None else count)}
    return httpx.Response(200, json=items, headers=headers)


async def collect(api: apify_client.ApifyClient, **kwargs: Any) -> list[tuple[int, dict[str, Any]]]:
    return [pair async for pair in api.iter_dataset_items("ds1", **kwargs)]


async def test_pages_advance_by_count_when_clean_skipped_rows(
    router: respx.MockRouter, make_client: Make
) -> None:
    route = router.get(ITEMS).mock(
        side_effect=[
            page([{"n": 0}, {"n": 1}, {"n": 2}]),
            page([{"n": 3}, {"n": 5}], count=3),  # row 4 was empty: clean skipped it
            page([{"n": 6}, {"n": 7}]),
            page([]),
        ]
    )
    got = await collect(make_client(), page_size=3)
    assert [index for index, _ in got] == [0, 1, 2, 3, 4, 6, 7]
    assert [item["n"] for _, item in got] == [0, 1, 2, 3, 5, 6, 7]
    offsets = [int(call.request.url.params["offset"]) for call in route.calls]
    assert offsets == [0, 3, 6, 8]
    params = route.calls[0].request.url.params
    assert params["clean"] == "true"
    assert params["format"] == "json"
    assert params["limit"] == "3"


async def test_a_fully_filtered_page_does_not_stop_paging(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.get(ITEMS).mock(side_effect=[page([], count=2), page([{"n": 2}]), page([])])
    got = await collect(make_client(), page_size=2)
    assert got == [(2, {"n": 2})]


async def test_limit_stops_and_shrinks_the_last_page(
    router: respx.MockRouter, make_client: Make
) -> None:
    route = router.get(ITEMS).mock(
        side_effect=[page([{"n": i} for i in range(3)]), page([{"n": 3}])]
    )
    got = await collect(make_client(), page_size=3, limit=4)
    assert [index for index, _ in got] == [0, 1, 2, 3]
    assert [call.request.url.params["limit"] for call in route.calls] == ["3", "1"]


async def test_start_index_resumes(router: respx.MockRouter, make_client: Make) -> None:
    route = router.get(ITEMS).mock(side_effect=[page([{"n": 7}]), page([])])
    got = await collect(make_client(), start_index=7)
    assert got == [(7, {"n": 7})]
    assert route.calls[0].request.url.params["offset"] == "7"


async def test_missing_count_header_falls_back_to_item_count(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.get(ITEMS).mock(
        side_effect=[httpx.Response(200, json=[{"n": 0}, {"n": 1}]), httpx.Response(200, json=[])]
    )
    got = await collect(make_client(), page_size=2)
    assert [index for index, _ in got] == [0, 1]


async def test_a_page_that_fails_to_parse_is_retried(
    router: respx.MockRouter, make_client: Make
) -> None:
    router.get(ITEMS).mock(
        side_effect=[
            httpx.Response(200, content=b'[{"n": 0}, {"n"'),  # truncated
            httpx.Response(502, text="<html>bad gateway</html>"),
            page([{"n": 0}]),
            page([]),
        ]
    )
    assert await collect(make_client()) == [(0, {"n": 0})]


@pytest.mark.parametrize(
    "content",
    [b'{"items": []}', b'[{"n": 0}, {"n": 1', b"<html>502</html>"],
    ids=["not-an-array", "truncated", "html"],
)
async def test_bad_page_raises_a_typed_error_after_retries(
    router: respx.MockRouter, make_client: Make, content: bytes
) -> None:
    route = router.get(ITEMS).mock(return_value=httpx.Response(200, content=content))
    with pytest.raises(errors.ApifyTransientError):
        await collect(make_client())
    assert route.call_count == apify_client.MAX_ATTEMPTS
