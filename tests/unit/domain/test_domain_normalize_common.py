"""The dispatcher, the rules every actor shares, and the update-merge rule."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from domain_samples import SAMPLES, sample

from kairo_ingest import errors
from kairo_ingest.domain import normalize

Skip = normalize.Skip
PAIRS = sorted(SAMPLES)


@pytest.mark.parametrize("pair", PAIRS)
def test_every_pair_normalizes_its_sample(pair: tuple[str, str]) -> None:
    result = normalize.normalize(*pair, sample(SAMPLES[pair]))
    assert isinstance(result, normalize.NormalizedItem)
    assert result.platform == pair[0]


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize("raw", [None, [], ["a"], "text", 3, 1.5, True])
def test_non_object_items_are_invalid(pair: tuple[str, str], raw: object) -> None:
    assert normalize.normalize(*pair, raw) == Skip("invalid_field:item")


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize(
    "error_fields",
    [
        {"error": "no_items", "errorDescription": "Empty or private data for provided input"},
        {"error": "no_items"},
        {"errorDescription": "Something failed"},
        {"noResults": True},
        {"error": {"type": "x"}},
    ],
)
def test_error_items_are_skipped_even_with_content(
    pair: tuple[str, str], error_fields: dict[str, object]
) -> None:
    raw = {**sample(SAMPLES[pair]), **error_fields}
    assert normalize.normalize(*pair, raw) == Skip("error_item")


@pytest.mark.parametrize("pair", PAIRS)
@pytest.mark.parametrize(
    "fields", [{"error": None}, {"error": False}, {"noResults": False}, {"errorDescription": ""}]
)
def test_empty_error_fields_are_not_error_items(
    pair: tuple[str, str], fields: dict[str, object]
) -> None:
    result = normalize.normalize(*pair, {**sample(SAMPLES[pair]), **fields})
    assert isinstance(result, normalize.NormalizedItem)


@pytest.mark.parametrize("pair", [p for p in PAIRS if p[0] != "web"])
def test_empty_object_is_missing_id(pair: tuple[str, str]) -> None:
    assert normalize.normalize(*pair, {}) == Skip("missing_id")


def test_empty_web_object_is_missing_url() -> None:
    assert normalize.normalize("web", "crawl_pages", {}) == Skip("missing_url")


def test_unknown_pair_raises_usage_error() -> None:
    with pytest.raises(errors.UsageError, match="valid pairs"):
        normalize.normalize("instagram", "stories", {})


def test_dedupe_keys() -> None:
    ig = normalize.normalize("instagram", "posts", sample(SAMPLES["instagram", "posts"]))
    web = normalize.normalize("web", "crawl_pages", sample(SAMPLES["web", "crawl_pages"]))
    assert isinstance(ig, normalize.NormalizedItem)
    assert isinstance(web, normalize.NormalizedItem)
    assert ig.dedupe_key == ("instagram", "post", "3712345678901234567")
    assert web.dedupe_key == ("web", "web_page", "https://northwind.example/blog")


def test_as_record_is_plain() -> None:
    item = normalize.normalize(
        "tiktok", "profile_videos", sample(SAMPLES["tiktok", "profile_videos"])
    )
    assert isinstance(item, normalize.NormalizedItem)
    record = item.as_record()
    assert record["platform"] == "tiktok"
    assert type(record["platform"]) is str
    assert record["hashtags"] == ["northwind", "bts"]


# --- merge -----------------------------------------------------------------------------------


def test_merge_raw_refs_appends_without_duplicates() -> None:
    run_a, run_b = str(uuid.uuid4()), str(uuid.uuid4())
    old = [{"apify_run_id": run_a, "raw_item_id": 1}, {"apify_run_id": run_a, "raw_item_id": 1}]
    new = [
        {"apify_run_id": run_a, "raw_item_id": "1"},  # the same ref, id as text
        {"apify_run_id": run_b, "raw_item_id": 7},
        {"apify_run_id": run_b, "raw_item_id": 7},
    ]
    assert normalize.merge_raw_refs(old, new) == [
        {"apify_run_id": run_a, "raw_item_id": 1},
        {"apify_run_id": run_b, "raw_item_id": 7},
    ]


def test_merge_raw_refs_with_uuid_objects_and_odd_entries() -> None:
    run = uuid.uuid4()
    old: list[dict[str, object]] = [{"apify_run_id": run, "raw_item_id": 3}, {"note": "legacy"}]
    new: list[dict[str, object]] = [
        {"apify_run_id": str(run), "raw_item_id": 3},
        {"note": "legacy"},
    ]
    assert normalize.merge_raw_refs(old, new) == old


def test_merge_raw_refs_empty() -> None:
    assert normalize.merge_raw_refs([], []) == []
    assert normalize.merge_raw_refs([], [{"apify_run_id": "r", "raw_item_id": 1}]) == [
        {"apify_run_id": "r", "raw_item_id": 1}
    ]


def test_merge_update_keeps_old_values_when_new_are_empty() -> None:
    old = normalize.normalize(
        "youtube", "channel_videos", sample(SAMPLES["youtube", "channel_videos"])
    )
    assert isinstance(old, normalize.NormalizedItem)
    new = dataclasses.replace(
        old,
        published_at=None,
        title=None,
        text_secondary="  ",
        text_primary="",
        metrics={"views": 2},
    )
    merged = normalize.merge_update(old, new)
    assert merged.published_at == old.published_at
    assert merged.title == old.title
    assert merged.text_secondary == old.text_secondary
    assert merged.text_primary == ""  # everything else is overwritten
    assert merged.metrics == {"views": 2}


def test_merge_update_takes_new_values_when_present() -> None:
    old = normalize.normalize(
        "youtube", "channel_videos", sample(SAMPLES["youtube", "channel_videos"])
    )
    assert isinstance(old, normalize.NormalizedItem)
    later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    new = dataclasses.replace(old, published_at=later, title="New", text_secondary="New text")
    assert normalize.merge_update(old, new) == new
