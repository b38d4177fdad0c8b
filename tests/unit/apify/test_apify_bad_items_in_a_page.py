"""One bad item never throws away its page.

Old: ``_parse_page`` raised a retryable error for a page holding one non-object item or
one undecodable byte, and ``json.loads`` raised ``RecursionError`` on an item nested
5,000 deep; after every retry the source failed with 0 of 10 items stored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import models, pages

Make = Callable[..., apify_client.ApifyClient]
ITEMS = "/v2/datasets/ds1/items"
DEEP = b"[" * 5000 + b"]" * 5000


def raw_page(content: bytes, count: int) -> httpx.Response:
    return httpx.Response(200, content=content, headers={"X-Apify-Pagination-Count": str(count)})


async def collect(api: apify_client.ApifyClient) -> list[tuple[int, Any]]:
    return [pair async for pair in api.iter_dataset_items("ds1", page_size=10)]


def ten_with(bad: bytes, position: int = 4) -> bytes:
    parts = [json.dumps({"n": n}).encode() for n in range(10)]
    parts[position] = bad
    return b"[" + b",".join(parts) + b"]"


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (b'"just a string"', "just a string"),
        (b"42", 42),
        (b"null", None),
        (b"[1, 2]", [1, 2]),
    ],
    ids=["string", "number", "null", "array"],
)
async def test_a_non_object_item_is_yielded_as_it_is(
    router: respx.MockRouter, make_client: Make, bad: bytes, expected: Any
) -> None:
    router.get(ITEMS).mock(side_effect=[raw_page(ten_with(bad), 10), raw_page(b"[]", 0)])
    got = await collect(make_client())
    assert len(got) == 10
    assert got[4] == (4, expected)
    assert [item for _, item in got if isinstance(item, dict)] == [
        {"n": n} for n in range(10) if n != 4
    ]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b'{"text": "caf\xe9 \xff"}', "undecodable"),
        (DEEP, "too_deep"),
        (b'{"a": 1,}', "invalid_json"),
    ],
)
async def test_an_item_that_cannot_be_decoded_alone_becomes_unparsable(
    router: respx.MockRouter, make_client: Make, bad: bytes, reason: str
) -> None:
    router.get(ITEMS).mock(side_effect=[raw_page(ten_with(bad), 10), raw_page(b"[]", 0)])
    got = await collect(make_client())
    assert [index for index, _ in got] == list(range(10))
    item = got[4][1]
    assert isinstance(item, models.UnparsableItem)
    assert item.reason == reason
    assert 0 < len(item.excerpt) <= models.EXCERPT_CHARS
    assert item.excerpt.isprintable()
    assert sum(isinstance(value, dict) for _, value in got) == 9


async def test_offsets_advance_by_count_when_a_page_is_split(
    router: respx.MockRouter, make_client: Make
) -> None:
    route = router.get(ITEMS).mock(
        side_effect=[raw_page(ten_with(b"\xff"), 12), raw_page(b"[]", 0)]
    )
    got = await collect(make_client())
    assert len(got) == 10
    assert route.calls[1].request.url.params["offset"] == "10"  # min(count, limit)


def test_the_scanner_respects_strings_escapes_and_depth() -> None:
    content = b' [ {"a": "x,]\\"}"}, [1, [2, 3]], "s\\\\", 4 ] '
    assert pages.split_array(content) == [b'{"a": "x,]\\"}"}', b"[1, [2, 3]]", b'"s\\\\"', b"4"]
    assert pages.split_array(b"[]") == []
    assert pages.split_array(b'[{"a": 1}, {"b"') is None  # truncated: not an array
    assert pages.split_array(b"<html></html>") is None
    assert pages.split_array(b"[1]]") is None
