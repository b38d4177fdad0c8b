"""Instagram posts and reels."""

from __future__ import annotations

import datetime as dt

import pytest
from domain_samples import (
    DROP,
    INSTAGRAM_CAROUSEL_CHILD,
    INSTAGRAM_ERROR,
    INSTAGRAM_POST,
    INSTAGRAM_REEL,
    sample,
)

from kairo_ingest.domain import normalize

NormalizedItem = normalize.NormalizedItem
Skip = normalize.Skip


def post(raw: object) -> NormalizedItem:
    result = normalize.normalize("instagram", "posts", raw)
    assert isinstance(result, NormalizedItem), result
    return result


def reel(raw: object) -> NormalizedItem:
    result = normalize.normalize("instagram", "reels", raw)
    assert isinstance(result, NormalizedItem), result
    return result


def test_post_field_mapping() -> None:
    item = post(sample(INSTAGRAM_POST))
    assert item.platform == "instagram"
    assert item.content_type == "post"
    assert item.external_id == "3712345678901234567"
    assert item.canonical_url == "https://www.instagram.com/p/DQxYz12AbCd/"
    assert item.published_at == dt.datetime(2025, 11, 2, 8, 15, tzinfo=dt.UTC)
    assert item.author_ref == "northwind"
    assert item.title is None
    assert item.text_primary == "Spring collection is here #northwind #Spring"
    assert item.text_secondary is None
    assert item.hashtags == ("northwind", "spring")
    assert item.media == {
        "type": "Video",
        "short_code": "DQxYz12AbCd",
        "owner_id": "902114577",
        "audio_id": "1187766554433221",
        "video_duration": 21.7,
    }
    assert item.flags["is_low_value"] is False
    assert item.flags["paid_partnership"] is False


def test_hidden_likes_are_unknown_not_zero() -> None:
    item = post(sample(INSTAGRAM_POST))
    assert "likes" not in item.metrics
    assert item.flags["likes_hidden"] is True
    assert item.metrics == {"comments": 41, "views": 98213, "plays": 1203311}


def test_visible_likes_are_kept() -> None:
    item = post(sample(INSTAGRAM_POST, likesCount=12))
    assert item.metrics["likes"] == 12
    assert "likes_hidden" not in item.flags


def test_zero_is_a_known_count() -> None:
    item = post(sample(INSTAGRAM_POST, commentsCount=0))
    assert item.metrics["comments"] == 0


def test_carousel_child_with_null_likes_and_timestamp() -> None:
    item = post(sample(INSTAGRAM_CAROUSEL_CHILD))
    assert item.published_at is None
    assert "likes" not in item.metrics
    assert "likes_hidden" not in item.flags
    assert item.metrics == {"comments": 0}
    assert item.text_primary == ""
    assert item.flags["is_low_value"] is True


def test_image_post_has_no_video_counts() -> None:
    item = post(
        sample(INSTAGRAM_POST, videoViewCount=DROP, videoPlayCount=DROP, videoDuration=DROP)
    )
    assert set(item.metrics) == {"comments"}
    assert "video_duration" not in item.media


def test_numeric_id_becomes_a_string() -> None:
    assert post(sample(INSTAGRAM_POST, id=3712345678901234567)).external_id == "3712345678901234567"


@pytest.mark.parametrize("value", [None, "", "   ", DROP])
def test_missing_id_is_skipped(value: object) -> None:
    assert normalize.normalize("instagram", "posts", sample(INSTAGRAM_POST, id=value)) == Skip(
        "missing_id"
    )


def test_missing_url_is_built_from_short_code() -> None:
    assert post(sample(INSTAGRAM_POST, url=None)).canonical_url == (
        "https://www.instagram.com/p/DQxYz12AbCd/"
    )
    assert reel(sample(INSTAGRAM_REEL, url=DROP)).canonical_url == (
        "https://www.instagram.com/reel/DRreel0001x/"
    )


def test_missing_url_and_short_code_is_skipped() -> None:
    raw = sample(INSTAGRAM_POST, url=None, shortCode=None)
    assert normalize.normalize("instagram", "posts", raw) == Skip("missing_url")


def test_error_item_is_skipped() -> None:
    assert normalize.normalize("instagram", "posts", sample(INSTAGRAM_ERROR)) == Skip("error_item")


def test_no_caption_is_low_value() -> None:
    item = post(sample(INSTAGRAM_POST, caption=None, hashtags=DROP))
    assert item.flags["is_low_value"] is True
    assert item.text_primary == ""
    assert item.hashtags == ()


def test_hashtags_fall_back_to_the_caption() -> None:
    item = post(sample(INSTAGRAM_POST, hashtags=DROP, caption="Hi #One and #two #one #2024"))
    assert item.hashtags == ("one", "two")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", {"x": 1}),
        ("id", 1.5),
        ("id", True),
        ("url", 42),
        ("url", "not a url"),
        ("caption", {"text": "hi"}),
    ],
)
def test_wrong_type_of_identity_or_text_is_invalid_field(field: str, value: object) -> None:
    result = normalize.normalize("instagram", "posts", sample(INSTAGRAM_POST, **{field: value}))
    assert result == Skip(f"invalid_field:{field}")


def test_wrong_types_elsewhere_read_as_unknown() -> None:
    raw = sample(
        INSTAGRAM_POST,
        likesCount="many",
        commentsCount=[1],
        timestamp=12,
        ownerUsername={"u": 1},
        musicInfo="x",
        hashtags="acme",
        videoDuration=float("nan"),
    )
    item = post(raw)
    assert item.author_ref == ""
    assert item.published_at is None
    assert "likes" not in item.metrics
    assert "comments" not in item.metrics
    assert "audio_id" not in item.media
    assert "video_duration" not in item.media
    assert item.hashtags == ("northwind", "spring")  # from the caption


def test_reel_adds_transcript() -> None:
    item = reel(sample(INSTAGRAM_REEL))
    assert item.content_type == "reel"
    assert item.text_secondary == "Hi everyone, today we show the spring line."
    assert item.flags["has_transcript"] is True
    assert item.metrics["likes"] == 5120
    assert item.media["width"] == 1080
    assert item.media["height"] == 1920


def test_reel_without_transcript() -> None:
    item = reel(sample(INSTAGRAM_REEL, transcript=DROP))
    assert item.text_secondary is None
    assert item.flags["has_transcript"] is False
    assert item.flags["is_low_value"] is False


def test_reel_low_value_needs_no_caption_and_no_transcript() -> None:
    assert reel(sample(INSTAGRAM_REEL, caption=None)).flags["is_low_value"] is False
    assert reel(sample(INSTAGRAM_REEL, caption=None, transcript="")).flags["is_low_value"] is True


def test_posts_ignore_a_transcript() -> None:
    item = post(sample(INSTAGRAM_POST, transcript="hello"))
    assert item.text_secondary is None
    assert "has_transcript" not in item.flags


def test_nul_characters_are_removed() -> None:
    item = post(sample(INSTAGRAM_POST, caption="a\x00b", ownerUsername="north\x00wind"))
    assert item.text_primary == "ab"
    assert item.author_ref == "northwind"
