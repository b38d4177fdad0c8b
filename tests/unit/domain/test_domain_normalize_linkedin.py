"""LinkedIn company and profile posts."""

from __future__ import annotations

import datetime as dt

import pytest
from domain_samples import DROP, LINKEDIN_COMPANY_POST, LINKEDIN_PROFILE_POST, sample

from kairo_ingest.domain import normalize

NormalizedItem = normalize.NormalizedItem
Skip = normalize.Skip


def run(raw: object, capability: str = "company_posts") -> NormalizedItem | normalize.Skip:
    return normalize.normalize("linkedin", capability, raw)


def post(raw: object, capability: str = "company_posts") -> NormalizedItem:
    result = run(raw, capability)
    assert isinstance(result, NormalizedItem), result
    return result


def test_company_post_field_mapping() -> None:
    item = post(sample(LINKEDIN_COMPANY_POST))
    assert item.platform == "linkedin"
    assert item.content_type == "text_post"
    assert item.external_id == "7401234567890123456"
    assert item.canonical_url == (
        "https://www.linkedin.com/posts/northwind_launch-activity-7401234567890123456-AbCd"
    )
    assert item.author_ref == "https://www.linkedin.com/company/northwind/posts"
    assert item.text_primary == "We are hiring! #Hiring #growth\nJoin us."
    assert item.hashtags == ("hiring", "growth")
    assert item.title is None
    assert item.media == {"type": "image", "item_count": 1, "post_type": "regular"}
    assert item.flags == {"is_low_value": False, "is_edited": False}


def test_published_at_prefers_the_millisecond_timestamp() -> None:
    # posted_at.date "2026-01-05 11:30:00" is the scraper's local time; the timestamp is exact.
    item = post(sample(LINKEDIN_COMPANY_POST))
    assert item.published_at == dt.datetime(2026, 1, 5, 10, 30, tzinfo=dt.UTC)


def test_zoneless_date_alone_is_read_as_utc() -> None:
    raw = sample(LINKEDIN_COMPANY_POST)
    del raw["posted_at"]["timestamp"]
    assert post(raw).published_at == dt.datetime(2026, 1, 5, 11, 30, tzinfo=dt.UTC)


def test_unreadable_posted_at_is_none() -> None:
    assert post(sample(LINKEDIN_COMPANY_POST, posted_at={"relative": "49m"})).published_at is None
    assert post(sample(LINKEDIN_COMPANY_POST, posted_at="49m")).published_at is None


def test_stats_keys_appear_only_when_non_zero() -> None:
    item = post(sample(LINKEDIN_COMPANY_POST))
    # total_comments and reposts are absent from stats: the actor omits zero counts.
    assert item.metrics == {"reactions": 12, "likes": 10, "comments": 0, "reposts": 0}


def test_stats_all_present() -> None:
    stats = {"total_reactions": 5, "like": 4, "total_comments": 2, "reposts": 1}
    assert post(sample(LINKEDIN_COMPANY_POST, stats=stats)).metrics == {
        "reactions": 5,
        "likes": 4,
        "comments": 2,
        "reposts": 1,
    }


@pytest.mark.parametrize("stats", [DROP, None, "n/a", [1, 2]])
def test_missing_stats_means_every_metric_unknown(stats: object) -> None:
    assert post(sample(LINKEDIN_COMPANY_POST, stats=stats)).metrics == {}


def test_null_or_negative_stat_is_unknown() -> None:
    stats = {"total_reactions": None, "like": -1, "total_comments": 3}
    assert post(sample(LINKEDIN_COMPANY_POST, stats=stats)).metrics == {"comments": 3, "reposts": 0}


def test_ugc_post_full_urn_dedupes_on_activity_urn() -> None:
    item = post(sample(LINKEDIN_PROFILE_POST), "profile_posts")
    assert item.external_id == "7401234567890999999"


def test_full_urn_when_activity_urn_is_missing() -> None:
    activity = post(sample(LINKEDIN_COMPANY_POST, activity_urn=None))
    assert activity.external_id == "7401234567890123456"  # same key as with activity_urn
    ugc = post(sample(LINKEDIN_PROFILE_POST, activity_urn=DROP), "profile_posts")
    assert ugc.external_id == "urn:li:ugcPost:7401234567890888888"


def test_numeric_activity_urn_is_a_string() -> None:
    item = post(sample(LINKEDIN_COMPANY_POST, activity_urn=7401234567890123456))
    assert item.external_id == "7401234567890123456"


def test_no_urn_at_all_is_missing_id() -> None:
    assert run(sample(LINKEDIN_COMPANY_POST, activity_urn=DROP, full_urn=None)) == Skip(
        "missing_id"
    )


def test_missing_post_url_uses_the_feed_url() -> None:
    item = post(sample(LINKEDIN_COMPANY_POST, post_url=None))
    assert item.canonical_url == (
        "https://www.linkedin.com/feed/update/urn:li:activity:7401234567890123456/"
    )


def test_missing_post_url_with_odd_id_is_missing_url() -> None:
    raw = sample(LINKEDIN_COMPANY_POST, post_url=None, activity_urn="abc")
    assert run(raw) == Skip("missing_url")


def test_profile_post_author_is_profile_url() -> None:
    item = post(sample(LINKEDIN_PROFILE_POST), "profile_posts")
    assert item.author_ref == "https://www.linkedin.com/in/jane-doe"
    assert item.content_type == "text_post"


def test_hashtags_from_text_only() -> None:
    text = "See https://acme.example/#anchor and #Launch, #launch, #2026 and email a#b"
    assert post(sample(LINKEDIN_COMPANY_POST, text=text)).hashtags == ("launch",)


def test_empty_text_is_low_value() -> None:
    item = post(sample(LINKEDIN_COMPANY_POST, text=None))
    assert item.text_primary == ""
    assert item.flags["is_low_value"] is True


def test_text_of_wrong_type_is_invalid_field() -> None:
    assert run(sample(LINKEDIN_COMPANY_POST, text=["a"])) == Skip("invalid_field:text")
