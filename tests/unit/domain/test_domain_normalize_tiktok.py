"""TikTok profile videos."""

from __future__ import annotations

import datetime as dt

import pytest
from domain_samples import DROP, TIKTOK_VIDEO, sample

from kairo_ingest.domain import normalize

NormalizedItem = normalize.NormalizedItem
Skip = normalize.Skip


def run(raw: object) -> NormalizedItem | normalize.Skip:
    return normalize.normalize("tiktok", "profile_videos", raw)


def video(raw: object) -> NormalizedItem:
    result = run(raw)
    assert isinstance(result, NormalizedItem), result
    return result


def test_field_mapping() -> None:
    item = video(sample(TIKTOK_VIDEO))
    assert item.platform == "tiktok"
    assert item.content_type == "short_video"
    assert item.external_id == "7588123456789012345"
    assert item.canonical_url == "https://www.tiktok.com/@northwind/video/7588123456789012345"
    assert item.published_at == dt.datetime(2025, 12, 29, 9, 20, tzinfo=dt.UTC)
    assert item.author_ref == "northwind"
    assert item.text_primary == "Behind the scenes #northwind #BTS"
    assert item.hashtags == ("northwind", "bts")
    assert item.metrics == {"plays": 1204, "likes": 77, "comments": 5, "shares": 0, "saves": 3}
    assert item.media == {
        "duration": 34,
        "width": 1080,
        "height": 1920,
        "cover_url": "https://p16.tiktokcdn.example/cover.jpeg",
        "author_fans": 48200,
    }
    assert item.flags == {"is_low_value": False, "is_sponsored": True, "is_ad": False}


def test_nineteen_digit_id_stays_an_exact_string() -> None:
    assert video(sample(TIKTOK_VIDEO, id=7592641437091532062)).external_id == "7592641437091532062"


def test_create_time_epoch_seconds_when_iso_missing() -> None:
    item = video(sample(TIKTOK_VIDEO, createTimeISO=DROP, createTime=1767799606))
    assert item.published_at == dt.datetime(2026, 1, 7, 15, 26, 46, tzinfo=dt.UTC)


def test_unreadable_times_are_none() -> None:
    assert video(sample(TIKTOK_VIDEO, createTimeISO="soon", createTime=-1)).published_at is None


def test_item_with_neither_id_nor_url_is_dropped() -> None:
    assert run(sample(TIKTOK_VIDEO, id=DROP, webVideoUrl=None)) == Skip("missing_id")


def test_id_is_taken_from_the_url_when_missing() -> None:
    assert video(sample(TIKTOK_VIDEO, id=None)).external_id == "7588123456789012345"


def test_url_is_built_when_missing() -> None:
    item = video(sample(TIKTOK_VIDEO, webVideoUrl=DROP))
    assert item.canonical_url == "https://www.tiktok.com/@northwind/video/7588123456789012345"


def test_url_missing_and_no_author_is_skipped() -> None:
    assert run(sample(TIKTOK_VIDEO, webVideoUrl=DROP, authorMeta=None)) == Skip("missing_url")


def test_missing_and_negative_counts_are_unknown() -> None:
    item = video(sample(TIKTOK_VIDEO, playCount=DROP, diggCount=None, shareCount=-1))
    assert item.metrics == {"comments": 5, "saves": 3}


def test_no_text_is_low_value() -> None:
    item = video(sample(TIKTOK_VIDEO, text="", hashtags=[]))
    assert item.flags["is_low_value"] is True
    assert item.text_primary == ""


def test_hashtags_accept_strings_and_skip_junk() -> None:
    item = video(
        sample(TIKTOK_VIDEO, hashtags=[{"name": "#A"}, "b", {"id": 1}, None, 3, {"name": None}])
    )
    assert item.hashtags == ("a", "b")


def test_error_items() -> None:
    assert run({"error": "Profile not found", "input": "nobody"}) == Skip("error_item")
    assert run({"noResults": True}) == Skip("error_item")


@pytest.mark.parametrize("field", ["id", "webVideoUrl", "text"])
def test_wrong_type_is_invalid_field(field: str) -> None:
    assert run(sample(TIKTOK_VIDEO, **{field: ["x"]})) == Skip(f"invalid_field:{field}")


def test_wrong_nested_types_read_as_unknown() -> None:
    item = video(sample(TIKTOK_VIDEO, authorMeta="northwind", videoMeta=[1, 2], isAd="no"))
    assert item.author_ref == ""
    assert item.media == {}
    assert "is_ad" not in item.flags
