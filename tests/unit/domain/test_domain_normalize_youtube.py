"""YouTube channel videos."""

from __future__ import annotations

import datetime as dt

import pytest
from domain_samples import DROP, YOUTUBE_VIDEO, sample

from kairo_ingest.domain import normalize
from kairo_ingest.domain.normalize import youtube

NormalizedItem = normalize.NormalizedItem
Skip = normalize.Skip


def run(raw: object) -> NormalizedItem | normalize.Skip:
    return normalize.normalize("youtube", "channel_videos", raw)


def video(raw: object) -> NormalizedItem:
    result = run(raw)
    assert isinstance(result, NormalizedItem), result
    return result


def test_field_mapping() -> None:
    item = video(sample(YOUTUBE_VIDEO))
    assert item.platform == "youtube"
    assert item.content_type == "video"
    assert item.external_id == "Zx9_Ab-Cd12"
    assert item.canonical_url == "https://www.youtube.com/watch?v=Zx9_Ab-Cd12"
    assert item.published_at == dt.datetime(2025, 9, 1, 14, 0, tzinfo=dt.UTC)
    assert item.author_ref == "UCabcdefghijklmnopqrstuv"
    assert item.title == "How we build it"
    assert item.text_primary == "How we build it"
    assert item.text_secondary == "In this video we walk through #making things."
    assert item.hashtags == ("making",)
    assert item.metrics == {"views": 1520, "likes": 33, "comments": 9}
    assert item.media == {
        "thumbnail_url": "https://i.ytimg.com/vi/Zx9_Ab-Cd12/maxresdefault.jpg",
        "duration_seconds": 725,
    }
    assert item.flags == {"is_members_only": False, "is_paid": True, "comments_off": False}


def test_bare_date_is_midnight_utc() -> None:
    assert video(sample(YOUTUBE_VIDEO, date="2021-12-21")).published_at == dt.datetime(
        2021, 12, 21, tzinfo=dt.UTC
    )


@pytest.mark.parametrize("value", ["10 months ago", "Streamed 3 weeks ago", "", None, 5])
def test_relative_or_unreadable_date_is_null_not_a_guess(value: object) -> None:
    assert video(sample(YOUTUBE_VIDEO, date=value)).published_at is None


def test_null_likes_are_unknown() -> None:
    item = video(sample(YOUTUBE_VIDEO, likes=None, commentsCount=DROP, commentsTurnedOff=True))
    assert item.metrics == {"views": 1520}
    assert item.flags["comments_off"] is True


def test_view_count_as_formatted_string() -> None:
    assert video(sample(YOUTUBE_VIDEO, viewCount="1,710,167,563")).metrics["views"] == 1710167563


def test_missing_url_is_built_from_the_id() -> None:
    assert video(sample(YOUTUBE_VIDEO, url=None)).canonical_url == (
        "https://www.youtube.com/watch?v=Zx9_Ab-Cd12"
    )


def test_missing_id_is_skipped() -> None:
    assert run(sample(YOUTUBE_VIDEO, id=DROP)) == Skip("missing_id")


def test_missing_title_gives_empty_text_and_null_title() -> None:
    item = video(sample(YOUTUBE_VIDEO, title=None, text=""))
    assert item.title is None
    assert item.text_primary == ""
    assert item.text_secondary is None


def test_title_of_wrong_type_is_invalid_field() -> None:
    assert run(sample(YOUTUBE_VIDEO, title={"runs": []})) == Skip("invalid_field:title")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("00:27:11", 1631), ("4:05", 245), ("1:02:03", 3723), (95, 95), ("live", None), (None, None)],
)
def test_duration_seconds(value: object, seconds: int | None) -> None:
    assert youtube.duration_seconds(value) == seconds
