"""The actor registry: every pair, input shapes, caps from the environment, flags."""

from __future__ import annotations

import json

import pytest

from kairo_ingest import errors
from kairo_ingest.domain import identifiers, registry, statuses

ALL_PAIRS = [
    "instagram.posts",
    "instagram.reels",
    "linkedin.company_posts",
    "linkedin.profile_posts",
    "tiktok.profile_videos",
    "youtube.channel_videos",
    "web.crawl_pages",
]

TABLE = [
    # pair, actor, default cap, content type, flagged
    ("instagram.posts", "apify~instagram-scraper", 8, "post", False),
    ("instagram.reels", "apify~instagram-reel-scraper", 6, "reel", False),
    ("linkedin.company_posts", "apimaestro~linkedin-company-posts", 6, "text_post", False),
    ("linkedin.profile_posts", "apimaestro~linkedin-profile-posts", 6, "text_post", True),
    ("tiktok.profile_videos", "clockworks~tiktok-scraper", 6, "short_video", False),
    ("youtube.channel_videos", "streamers~youtube-scraper", 6, "video", False),
    ("web.crawl_pages", "apify~website-content-crawler", 3, "web_page", False),
]


def split(pair: str) -> tuple[str, str]:
    platform, capability = pair.split(".")
    return platform, capability


def test_valid_pairs_lists_all_seven() -> None:
    assert registry.valid_pairs() == ALL_PAIRS
    assert len(registry.SPECS) == 7


@pytest.mark.parametrize(("pair", "actor", "cap", "content_type", "flagged"), TABLE)
def test_every_pair_matches_the_table(
    pair: str, actor: str, cap: int, content_type: str, flagged: bool
) -> None:
    spec = registry.get_spec(*split(pair))
    assert spec.key == pair
    assert spec.actor_id == actor
    assert spec.default_cap == cap
    assert spec.content_type == content_type
    assert (spec.feature_flag is not None) == flagged
    assert spec.cap_variable == f"KAIRO_CAP_{pair.replace('.', '_').upper()}"


@pytest.mark.parametrize("pair", ALL_PAIRS)
def test_every_pair_has_an_identifier_rule(pair: str) -> None:
    spec = registry.get_spec(*split(pair))
    sample = "https://acme.example" if spec.platform == statuses.Platform.WEB else "acme"
    assert identifiers.normalize_identifier(spec.platform, spec.capability, sample)


@pytest.mark.parametrize(
    ("platform", "capability"),
    [("instagram", "company_posts"), ("facebook", "posts"), ("web", ""), ("", "")],
)
def test_unknown_pair_raises_usage_error_listing_valid_pairs(
    platform: str, capability: str
) -> None:
    with pytest.raises(errors.UsageError) as info:
        registry.get_spec(platform, capability)
    for pair in ALL_PAIRS:
        assert pair in info.value.message


def test_get_spec_ignores_case_and_spaces() -> None:
    assert registry.get_spec(" TikTok ", "Profile_Videos").key == "tiktok.profile_videos"


# --- input builders --------------------------------------------------------------------------


def build(
    pair: str, identifier: str, cap: int, settings: dict[str, object] | None = None
) -> dict[str, object]:
    spec = registry.get_spec(*split(pair))
    result = spec.build_input(identifier, settings or {}, cap)
    json.dumps(result)  # always JSON
    return result


def test_instagram_posts_sends_the_profile_url_not_the_bare_username() -> None:
    assert build("instagram.posts", "acme", 8) == {
        "directUrls": ["https://www.instagram.com/acme/"],
        "resultsType": "posts",
        "resultsLimit": 8,
        "addParentData": False,
    }


def test_instagram_posts_builds_the_url_from_a_legacy_identifier() -> None:
    result = build("instagram.posts", "@Acme", 3)
    assert result["directUrls"] == ["https://www.instagram.com/acme/"]


def test_instagram_reels_input() -> None:
    assert build("instagram.reels", "acme", 6) == {
        "username": ["acme"],
        "resultsLimit": 6,
        "includeTranscript": True,
        "includeSharesCount": False,
        "includeDownloadedVideo": False,
        "skipPinnedPosts": True,
    }


def test_linkedin_company_input() -> None:
    assert build("linkedin.company_posts", "acme", 6) == {
        "company_name": "acme",
        "limit": 6,
        "sort": "recent",
    }


def test_linkedin_profile_input() -> None:
    assert build("linkedin.profile_posts", "https://www.linkedin.com/in/jane-doe", 4) == {
        "profile_url": "https://www.linkedin.com/in/jane-doe",
        "limit": 4,
        "sort": "recent",
    }


def test_tiktok_input_always_sends_results_per_page() -> None:
    assert build("tiktok.profile_videos", "acme", 6) == {
        "profiles": ["acme"],
        "resultsPerPage": 6,
        "profileSorting": "latest",
        "excludePinnedPosts": True,
        "profileScrapeSections": ["videos"],
    }
    assert build("tiktok.profile_videos", "@acme", 1)["profiles"] == ["acme"]


@pytest.mark.parametrize(
    ("identifier", "url"),
    [
        ("@acmehq", "https://www.youtube.com/@acmehq"),
        ("UCZ4qs1SgV7wTkM2VjHByuRQ", "https://www.youtube.com/channel/UCZ4qs1SgV7wTkM2VjHByuRQ"),
        (
            "https://www.youtube.com/channel/UCZ4qs1SgV7wTkM2VjHByuRQ",
            "https://www.youtube.com/channel/UCZ4qs1SgV7wTkM2VjHByuRQ",
        ),
    ],
)
def test_youtube_input(identifier: str, url: str) -> None:
    assert build("youtube.channel_videos", identifier, 6) == {
        "startUrls": [{"url": url}],
        "maxResults": 6,
        "maxResultsShorts": 0,
        "maxResultStreams": 0,
    }


def test_web_input_homepage_only() -> None:
    assert build("web.crawl_pages", "https://acme.example", 3) == {
        "startUrls": [{"url": "https://acme.example"}],
        "maxCrawlDepth": 1,
        "maxCrawlPages": 1,
    }


def test_web_input_takes_at_most_two_extra_start_urls() -> None:
    settings: dict[str, object] = {
        "extra_start_urls": [
            "https://acme.example/blog/",
            "https://acme.example/",  # the homepage again: not counted
            "https://acme.example/blog",  # a duplicate after normalization
            "https://acme.example/about",
            "https://acme.example/careers",
        ]
    }
    result = build("web.crawl_pages", "https://acme.example", 3, settings)
    assert result["startUrls"] == [
        {"url": "https://acme.example"},
        {"url": "https://acme.example/blog"},
        {"url": "https://acme.example/about"},
    ]
    assert result["maxCrawlPages"] == 3


def test_web_max_crawl_pages_is_min_of_cap_and_start_urls() -> None:
    settings: dict[str, object] = {
        "extra_start_urls": ["https://acme.example/a", "https://acme.example/b"]
    }
    assert build("web.crawl_pages", "https://acme.example", 2, settings)["maxCrawlPages"] == 2
    assert build("web.crawl_pages", "https://acme.example", 10, settings)["maxCrawlPages"] == 3


@pytest.mark.parametrize("extra", ["https://acme.example/a", [1, 2], ["not a url"], {"a": 1}])
def test_web_bad_extra_start_urls_is_a_usage_error(extra: object) -> None:
    with pytest.raises(errors.UsageError):
        build("web.crawl_pages", "https://acme.example", 3, {"extra_start_urls": extra})


def test_web_null_extra_start_urls_is_fine() -> None:
    result = build("web.crawl_pages", "https://acme.example", 3, {"extra_start_urls": None})
    assert result["maxCrawlPages"] == 1


@pytest.mark.parametrize("cap", [0, -1, True])
def test_builders_refuse_a_non_positive_cap(cap: int) -> None:
    with pytest.raises(ValueError, match="cap"):
        build("tiktok.profile_videos", "acme", cap)


def test_builders_return_fresh_dicts() -> None:
    first = build("tiktok.profile_videos", "acme", 6)
    first["profiles"].append("mutated")  # type: ignore[attr-defined]
    assert build("tiktok.profile_videos", "acme", 6)["profiles"] == ["acme"]


# --- validate_source --------------------------------------------------------------------------


def test_validate_source_returns_normalized_identifier() -> None:
    assert (
        registry.validate_source("instagram", "posts", "https://www.instagram.com/Acme/", {})
        == "acme"
    )


def test_validate_source_checks_settings() -> None:
    with pytest.raises(errors.UsageError, match="extra_start_urls"):
        registry.validate_source("web", "crawl_pages", "acme.example", {"extra_start_urls": "x"})


def test_validate_source_rejects_unknown_pair() -> None:
    with pytest.raises(errors.UsageError, match="valid pairs"):
        registry.validate_source("tiktok", "posts", "acme", {})


# --- caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pair", "actor", "cap", "content_type", "flagged"), TABLE)
def test_cap_defaults(pair: str, actor: str, cap: int, content_type: str, flagged: bool) -> None:
    assert registry.cap_for(*split(pair), {}) == cap


def test_a_configured_cap_wins_over_the_default() -> None:
    caps = {"instagram.posts": 20, "web.crawl_pages": 5}
    assert registry.cap_for("instagram", "posts", caps) == 20
    assert registry.cap_for("web", "crawl_pages", caps) == 5
    assert registry.cap_for("instagram", "reels", caps) == 6


def test_unknown_pair_cap_is_six() -> None:
    assert registry.cap_for("myspace", "posts", {"myspace.posts": 50}) == 6
    assert registry.UNKNOWN_PAIR_CAP == 6


@pytest.mark.parametrize(("pair", "actor", "cap", "content_type", "flagged"), TABLE)
def test_every_pair_has_a_setting_name(
    pair: str, actor: str, cap: int, content_type: str, flagged: bool
) -> None:
    spec = registry.get_spec(*split(pair))
    assert spec.setting_name == pair.replace(".", "_")
    assert registry.pair_of_setting(spec.setting_name) == pair


# --- flags -----------------------------------------------------------------------------------


def test_linkedin_profile_posts_is_off_by_default() -> None:
    enabled, reason = registry.capability_enabled("linkedin", "profile_posts", (), ())
    assert not enabled
    assert "KAIRO_FEATURE_LINKEDIN_PROFILE_POSTS" in reason


def test_its_flag_enables_linkedin_profile_posts() -> None:
    features = {"linkedin.profile_posts"}
    assert registry.capability_enabled("linkedin", "profile_posts", features, ()) == (True, "")


@pytest.mark.parametrize("pair", [p for p in ALL_PAIRS if p != "linkedin.profile_posts"])
def test_unflagged_pairs_are_enabled_by_default(pair: str) -> None:
    assert registry.capability_enabled(*split(pair), (), ()) == (True, "")


def test_disabled_capabilities_disable_any_pair() -> None:
    disabled = registry.parse_pairs(" linkedin.company_posts , WEB.crawl_pages,")
    assert disabled == {"linkedin.company_posts", "web.crawl_pages"}
    enabled, reason = registry.capability_enabled("linkedin", "company_posts", (), disabled)
    assert not enabled
    assert "KAIRO_DISABLED_CAPABILITIES" in reason
    assert registry.capability_enabled("instagram", "posts", (), disabled) == (True, "")


def test_disabled_wins_over_the_flag() -> None:
    enabled, reason = registry.capability_enabled(
        "linkedin", "profile_posts", {"linkedin.profile_posts"}, ["linkedin.profile_posts"]
    )
    assert not enabled
    assert "KAIRO_DISABLED_CAPABILITIES" in reason


def test_unknown_pairs_are_named() -> None:
    pairs = registry.parse_pairs("linkedin.company_posts,instagram.stories")
    assert registry.unknown_pairs(pairs) == ["instagram.stories"]
    assert registry.parse_pairs("") == frozenset()


def test_unknown_pair_is_not_enabled() -> None:
    enabled, reason = registry.capability_enabled("myspace", "posts", (), ())
    assert not enabled
    assert "unknown" in reason
