"""Identifier normalization: one test per rule per platform, plus idempotence properties."""

from __future__ import annotations

import pytest
from domain_samples import PROPERTY_SETTINGS
from hypothesis import given
from hypothesis import strategies as st

from kairo_ingest import errors
from kairo_ingest.domain import identifiers


def norm(platform: str, capability: str, raw: str) -> str:
    return identifiers.normalize_identifier(platform, capability, raw)


# --- every platform --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "capability"),
    [
        ("instagram", "posts"),
        ("instagram", "reels"),
        ("linkedin", "company_posts"),
        ("linkedin", "profile_posts"),
        ("tiktok", "profile_videos"),
        ("youtube", "channel_videos"),
        ("web", "crawl_pages"),
    ],
)
@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty_identifier_is_a_usage_error(platform: str, capability: str, raw: str) -> None:
    with pytest.raises(errors.UsageError, match="empty"):
        norm(platform, capability, raw)


def test_unknown_pair_is_a_usage_error_listing_valid_pairs() -> None:
    with pytest.raises(errors.UsageError, match=r"valid pairs: instagram\.posts"):
        norm("instagram", "company_posts", "acme")
    with pytest.raises(errors.UsageError, match="unknown platform"):
        norm("myspace", "posts", "acme")


def test_whitespace_inside_an_identifier_is_rejected() -> None:
    with pytest.raises(errors.UsageError, match="whitespace"):
        norm("instagram", "posts", "acme corp")


def test_platform_and_capability_are_case_insensitive() -> None:
    assert norm(" Instagram ", "POSTS", "acme") == "acme"


# --- instagram --------------------------------------------------------------------------------


def test_instagram_trims_whitespace() -> None:
    assert norm("instagram", "posts", "  acme  ") == "acme"


def test_instagram_drops_leading_at() -> None:
    assert norm("instagram", "posts", "@acme") == "acme"


def test_instagram_lowercases() -> None:
    assert norm("instagram", "reels", "@Acme.Brand_1") == "acme.brand_1"


def test_instagram_username_with_a_dot_is_not_taken_for_a_url() -> None:
    assert norm("instagram", "posts", "acme.co") == "acme.co"


@pytest.mark.parametrize(
    "url",
    [
        "https://www.instagram.com/Acme/",
        "https://instagram.com/acme",
        "HTTP://WWW.INSTAGRAM.COM/acme/?hl=en#top",
        "instagram.com/acme/",
        "www.instagram.com/acme",
        "https://www.instagram.com/acme/reels/",
    ],
)
def test_instagram_extracts_username_from_profile_url(url: str) -> None:
    assert norm("instagram", "posts", url) == "acme"


@pytest.mark.parametrize("path", ["p", "reel", "reels", "stories", "explore", "tv"])
def test_instagram_reserved_paths_are_not_usernames(path: str) -> None:
    with pytest.raises(errors.UsageError, match="not a username"):
        norm("instagram", "posts", f"https://www.instagram.com/{path}/DSGhrgIDmkP/")


def test_instagram_reserved_word_alone_is_not_a_username() -> None:
    with pytest.raises(errors.UsageError, match="not a username"):
        norm("instagram", "reels", "explore")


def test_instagram_url_of_another_site_is_rejected() -> None:
    with pytest.raises(errors.UsageError, match=r"instagram\.com"):
        norm("instagram", "posts", "https://www.tiktok.com/@acme")


def test_instagram_url_without_username_is_rejected() -> None:
    with pytest.raises(errors.UsageError, match="no username"):
        norm("instagram", "posts", "https://www.instagram.com/")


def test_instagram_invalid_characters_are_rejected() -> None:
    with pytest.raises(errors.UsageError, match="username"):
        norm("instagram", "posts", "acme!")


# --- tiktok -----------------------------------------------------------------------------------


def test_tiktok_drops_leading_at_and_lowercases() -> None:
    assert norm("tiktok", "profile_videos", " @Acme ") == "acme"


@pytest.mark.parametrize(
    "url",
    [
        "https://www.tiktok.com/@Acme",
        "https://www.tiktok.com/@acme/",
        "https://WWW.TIKTOK.COM/@acme?lang=en#x",
        "tiktok.com/@acme",
        "https://www.tiktok.com/@acme/video/7592641437091532062",
    ],
)
def test_tiktok_extracts_username_from_profile_url(url: str) -> None:
    assert norm("tiktok", "profile_videos", url) == "acme"


@pytest.mark.parametrize(
    "url",
    ["https://www.tiktok.com/tag/acme", "https://www.tiktok.com/", "https://vm.tiktok.com/ZMabc/"],
)
def test_tiktok_url_without_profile_is_rejected(url: str) -> None:
    with pytest.raises(errors.UsageError, match="profile URL"):
        norm("tiktok", "profile_videos", url)


# --- linkedin ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "https://www.linkedin.com/company/Acme-Inc/",
        "https://www.linkedin.com/company/acme-inc/posts/?feedView=all",
        "linkedin.com/company/ACME-INC",
        "Acme-Inc",
    ],
)
def test_linkedin_company_takes_the_slug_after_company_lowercased(raw: str) -> None:
    assert norm("linkedin", "company_posts", raw) == "acme-inc"


def test_linkedin_company_url_without_company_path_is_rejected() -> None:
    with pytest.raises(errors.UsageError, match="company URL"):
        norm("linkedin", "company_posts", "https://www.linkedin.com/in/jane-doe/")


@pytest.mark.parametrize(
    "raw",
    [
        "https://www.linkedin.com/in/jane-doe/",
        "HTTPS://WWW.LINKEDIN.COM/in/Jane-Doe?trk=x#y",
        "https://www.linkedin.com/in/jane-doe/recent-activity/all/",
        "jane-doe",
    ],
)
def test_linkedin_profile_is_a_profile_url(raw: str) -> None:
    assert norm("linkedin", "profile_posts", raw) == "https://www.linkedin.com/in/jane-doe"


def test_linkedin_profile_requires_in_path() -> None:
    with pytest.raises(errors.UsageError, match="profile URL"):
        norm("linkedin", "profile_posts", "https://www.linkedin.com/company/acme")


# --- youtube ----------------------------------------------------------------------------------


def test_youtube_keeps_channel_id_as_is() -> None:
    url = "https://www.youtube.com/channel/UCZ4qs1SgV7wTkM2VjHByuRQ"
    assert norm("youtube", "channel_videos", url) == url


def test_youtube_channel_url_lowercases_scheme_host_and_drops_slash_query_tab() -> None:
    raw = "HTTPS://WWW.YouTube.com/channel/UCZ4qs1SgV7wTkM2VjHByuRQ/videos/?view=0#x"
    assert norm("youtube", "channel_videos", raw) == (
        "https://www.youtube.com/channel/UCZ4qs1SgV7wTkM2VjHByuRQ"
    )


@pytest.mark.parametrize(
    "raw",
    ["https://www.youtube.com/@AcmeHQ", "https://youtube.com/@acmehq/videos", "@AcmeHQ", "AcmeHQ"],
)
def test_youtube_handle_becomes_at_handle_lowercased(raw: str) -> None:
    assert norm("youtube", "channel_videos", raw) == "@acmehq"


def test_youtube_custom_url_is_lowercased() -> None:
    assert norm("youtube", "channel_videos", "https://www.youtube.com/c/AcmeHQ/") == (
        "https://www.youtube.com/c/acmehq"
    )


def test_youtube_bare_channel_id_is_kept() -> None:
    assert (
        norm("youtube", "channel_videos", "UCZ4qs1SgV7wTkM2VjHByuRQ") == "UCZ4qs1SgV7wTkM2VjHByuRQ"
    )


@pytest.mark.parametrize(
    "raw", ["https://www.youtube.com/watch?v=8eEOaCCxGwo", "https://youtu.be/8eEOaCCxGwo"]
)
def test_youtube_video_url_is_not_a_channel(raw: str) -> None:
    with pytest.raises(errors.UsageError):
        norm("youtube", "channel_videos", raw)


# --- web --------------------------------------------------------------------------------------


def test_web_lowercases_scheme_and_host_but_not_path() -> None:
    assert norm("web", "crawl_pages", "HTTPS://Acme.Example/Blog") == "https://acme.example/Blog"


def test_web_drops_trailing_slash() -> None:
    assert norm("web", "crawl_pages", "https://acme.example/") == "https://acme.example"
    assert norm("web", "crawl_pages", "https://acme.example/blog/") == "https://acme.example/blog"


def test_web_keeps_query_and_drops_fragment() -> None:
    assert norm("web", "crawl_pages", "https://acme.example/shop/?lang=en#reviews") == (
        "https://acme.example/shop?lang=en"
    )


def test_web_without_scheme_is_https() -> None:
    assert norm("web", "crawl_pages", "acme.example") == "https://acme.example"


def test_web_keeps_port() -> None:
    assert norm("web", "crawl_pages", "http://LOCALHOST:8080/") == "http://localhost:8080"


@pytest.mark.parametrize(
    "raw",
    [
        "ftp://acme.example/",
        "mailto:someone@acme.example",
        "https://user:secret@acme.example/",
        "https://acme.example:notaport/",
        "http://[::1",
        "https://",
        "https://bad_host!/",
    ],
)
def test_web_rejects_what_is_not_an_http_url(raw: str) -> None:
    with pytest.raises(errors.UsageError):
        norm("web", "crawl_pages", raw)


def test_other_social_urls_drop_query_and_fragment() -> None:
    assert norm("youtube", "channel_videos", "https://www.youtube.com/c/Acme?sub=1#x") == (
        "https://www.youtube.com/c/acme"
    )


# --- helpers the registry uses ----------------------------------------------------------------


def test_helpers_accept_normalized_and_legacy_identifiers() -> None:
    assert identifiers.instagram_profile_url("@Acme") == "https://www.instagram.com/acme/"
    assert identifiers.instagram_handle("acme") == "acme"
    assert identifiers.tiktok_handle("@Acme") == "acme"
    assert identifiers.linkedin_company_slug("https://www.linkedin.com/company/acme") == "acme"
    assert identifiers.linkedin_profile_url("jane") == "https://www.linkedin.com/in/jane"
    assert identifiers.youtube_channel_url("@acme") == "https://www.youtube.com/@acme"
    assert identifiers.youtube_channel_url("UCZ4qs1SgV7wTkM2VjHByuRQ") == (
        "https://www.youtube.com/channel/UCZ4qs1SgV7wTkM2VjHByuRQ"
    )
    assert identifiers.youtube_channel_url("https://www.youtube.com/c/acme") == (
        "https://www.youtube.com/c/acme"
    )
    assert identifiers.web_start_url("acme.example/") == "https://acme.example"


def test_helpers_reject_empty() -> None:
    with pytest.raises(errors.UsageError, match="empty"):
        identifiers.instagram_profile_url("  ")


# --- properties -------------------------------------------------------------------------------

PAIRS = [
    ("instagram", "posts"),
    ("linkedin", "company_posts"),
    ("linkedin", "profile_posts"),
    ("tiktok", "profile_videos"),
    ("youtube", "channel_videos"),
    ("web", "crawl_pages"),
]

_PIECES = st.sampled_from(
    [
        "https://",
        "http://",
        "www.",
        "instagram.com",
        "tiktok.com",
        "linkedin.com",
        "youtube.com",
        "acme.example",
        "/",
        "@",
        "company/",
        "in/",
        "channel/",
        "c/",
        "p/",
        "Acme",
        "UCZ4qs1SgV7wTkM2VjHByuRQ",
        "?q=1",
        "#frag",
        ":8080",
        ".",
        "_",
        "-",
        " ",
        "%20",
        "é",
    ]
)
_IDENTIFIER_TEXT = st.one_of(st.lists(_PIECES, max_size=8).map("".join), st.text(max_size=40))


@PROPERTY_SETTINGS
@given(pair=st.sampled_from(PAIRS), raw=_IDENTIFIER_TEXT)
def test_normalization_only_raises_usage_error_and_is_idempotent(
    pair: tuple[str, str], raw: str
) -> None:
    try:
        once = norm(*pair, raw)
    except errors.UsageError:
        return
    assert once == once.strip()
    assert once
    assert norm(*pair, once) == once
