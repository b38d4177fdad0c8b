"""Very long texts are cut in evidence (flagged) and kept whole in the raw item;
over-long ids and URLs, which are index keys, make the item invalid instead."""

from __future__ import annotations

import copy

import pytest
from domain_samples import SAMPLES, TIKTOK_VIDEO, WEB_PAGE, sample

from kairo_ingest.domain import normalize
from kairo_ingest.domain.normalize import base, limits

CAP = limits.MAX_TEXT_CHARS
FIVE_MB = "x" * (5 * 1024 * 1024)


def _item(platform: str, capability: str, raw: object) -> normalize.NormalizedItem:
    result = normalize.normalize(platform, capability, raw)
    assert isinstance(result, normalize.NormalizedItem), result
    return result


def test_a_five_megabyte_caption_is_cut_to_the_cap_and_flagged() -> None:
    raw = sample(TIKTOK_VIDEO, text="caption " + FIVE_MB)
    before = copy.deepcopy(raw)

    item = _item("tiktok", "profile_videos", raw)

    assert len(item.text_primary) == CAP
    assert item.text_primary.startswith("caption x")
    assert item.flags[limits.TRUNCATED_FLAG] == ["text_primary"]
    assert raw == before, "the raw item, which is what is stored raw, keeps the whole text"


def test_every_long_web_text_is_cut_and_named() -> None:
    raw = sample(WEB_PAGE, text="body " + "b" * CAP)
    raw["metadata"] = {**raw["metadata"], "title": "t" * (CAP + 1), "description": "d" * 10**6}

    item = _item("web", "crawl_pages", raw)

    assert (len(item.title or ""), len(item.text_primary), len(item.text_secondary or "")) == (
        CAP,
        CAP,
        CAP,
    )
    assert sorted(item.flags[limits.TRUNCATED_FLAG]) == ["text_primary", "text_secondary", "title"]


def test_a_text_at_the_cap_is_kept_whole_without_a_flag() -> None:
    item = _item("tiktok", "profile_videos", sample(TIKTOK_VIDEO, text="y" * CAP))

    assert item.text_primary == "y" * CAP
    assert limits.TRUNCATED_FLAG not in item.flags


@pytest.mark.parametrize(("platform", "capability"), sorted(SAMPLES))
def test_no_sample_is_flagged_truncated(platform: str, capability: str) -> None:
    result = normalize.normalize(platform, capability, SAMPLES[(platform, capability)])
    assert isinstance(result, normalize.NormalizedItem)
    assert limits.TRUNCATED_FLAG not in result.flags


def test_an_over_long_id_is_invalid_not_truncated() -> None:
    """An id is a unique-index key: cutting it would merge different items, and PostgreSQL
    refuses an index row over ~2.7 kB (the whole page failed before)."""
    raw = sample(TIKTOK_VIDEO, id="7" * (base.MAX_ID_CHARS + 1))
    assert normalize.normalize("tiktok", "profile_videos", raw) == normalize.Skip(
        "invalid_field:id"
    )


def test_an_over_long_url_is_invalid_not_truncated() -> None:
    long_url = "https://acme.example/" + "p" * base.MAX_URL_CHARS
    raw = sample(WEB_PAGE, url=long_url)
    raw["metadata"] = {**raw["metadata"], "canonicalUrl": long_url}
    result = normalize.normalize("web", "crawl_pages", raw)
    assert isinstance(result, normalize.Skip)
    assert result.reason.startswith("invalid_field:")
