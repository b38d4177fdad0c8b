"""Web pages from the website content crawler."""

from __future__ import annotations

import datetime as dt

import pytest
from domain_samples import DROP, WEB_PAGE, sample

from kairo_ingest.domain import normalize

NormalizedItem = normalize.NormalizedItem
Skip = normalize.Skip


def run(raw: object) -> NormalizedItem | normalize.Skip:
    return normalize.normalize("web", "crawl_pages", raw)


def page(raw: object) -> NormalizedItem:
    result = run(raw)
    assert isinstance(result, NormalizedItem), result
    return result


def with_metadata(**changes: object) -> dict[str, object]:
    raw = sample(WEB_PAGE)
    for key, value in changes.items():
        if value is DROP:
            raw["metadata"].pop(key, None)
        else:
            raw["metadata"][key] = value
    return raw


def test_field_mapping() -> None:
    item = page(sample(WEB_PAGE))
    assert item.platform == "web"
    assert item.content_type == "web_page"
    assert item.external_id is None
    assert item.canonical_url == "https://northwind.example/blog"
    assert item.published_at == dt.datetime(2021, 3, 17, 13, 58, 16, tzinfo=dt.UTC)
    assert item.author_ref == "northwind.example"
    assert item.title == "Blog | Northwind"
    assert item.text_primary == "Blog\nAll articles from the workshop..."
    assert item.text_secondary == "Notes from the workshop"
    assert item.hashtags == ()
    assert item.metrics == {}
    assert item.media == {"og_image": "https://northwind.example/og.jpg"}
    assert item.flags == {"is_collection_page": True, "is_low_value": True, "http_status": 200}


def test_canonical_url_falls_back_to_url() -> None:
    item = page(with_metadata(canonicalUrl=DROP))
    assert item.canonical_url == "https://northwind.example/blog"


def test_relative_canonical_url_is_resolved_against_the_page() -> None:
    raw = with_metadata(canonicalUrl="/articles/first/")
    assert page(raw).canonical_url == "https://northwind.example/articles/first"


def test_canonical_url_keeps_query() -> None:
    raw = with_metadata(canonicalUrl="https://northwind.example/shop?page=2#x")
    assert page(raw).canonical_url == "https://northwind.example/shop?page=2"


def test_page_without_any_url_is_missing_url_never_merged() -> None:
    raw = sample(WEB_PAGE, url=DROP)
    raw["metadata"].pop("canonicalUrl")
    assert run(raw) == Skip("missing_url")
    assert run(sample(raw, url="   ")) == Skip("missing_url")


def test_unusable_url_is_invalid_field() -> None:
    raw = sample(WEB_PAGE, url="javascript:void(0)")
    raw["metadata"].pop("canonicalUrl")
    assert run(raw) == Skip("invalid_field:url")
    raw = sample(WEB_PAGE, url=DROP)
    raw["metadata"]["canonicalUrl"] = "/relative/only"
    assert run(raw) == Skip("invalid_field:canonicalUrl")


def test_bad_canonical_with_a_good_url_uses_the_url() -> None:
    assert (
        page(with_metadata(canonicalUrl={"x": 1})).canonical_url == "https://northwind.example/blog"
    )


def test_author_is_the_domain_without_www() -> None:
    raw = sample(WEB_PAGE, url="https://WWW.Northwind.example/about")
    raw["metadata"].pop("canonicalUrl")
    assert page(raw).author_ref == "northwind.example"


def test_top_level_date_published() -> None:
    json_ld = [{"@type": "Article", "datePublished": "2024-05-01"}]
    item = page(with_metadata(jsonLd=json_ld))
    assert item.published_at == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    assert item.flags["is_collection_page"] is False


def test_first_readable_date_published_wins() -> None:
    json_ld = [
        {"@type": "WebSite"},
        {"@graph": [{"@type": "Article", "datePublished": "not a date"}]},
        {"@graph": [{"datePublished": "2020-01-02T03:04:05Z"}, {"datePublished": "2019-01-01"}]},
    ]
    assert page(with_metadata(jsonLd=json_ld)).published_at == dt.datetime(
        2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC
    )


def test_json_ld_as_a_single_object() -> None:
    json_ld = {"@type": "CollectionPage", "datePublished": "2022-02-02"}
    item = page(with_metadata(jsonLd=json_ld))
    assert item.flags["is_collection_page"] is True
    assert item.published_at == dt.datetime(2022, 2, 2, tzinfo=dt.UTC)


def test_no_json_ld_means_no_date() -> None:
    assert page(with_metadata(jsonLd=None)).published_at is None


def test_long_text_that_is_not_a_collection_is_not_low_value() -> None:
    raw = with_metadata(jsonLd=[{"@type": "Article"}])
    raw["text"] = "x" * 200
    assert page(raw).flags["is_low_value"] is False
    raw["text"] = "x" * 199
    assert page(raw).flags["is_low_value"] is True


def test_missing_http_status_is_omitted() -> None:
    raw = sample(WEB_PAGE)
    del raw["crawl"]["httpStatusCode"]
    assert "http_status" not in page(raw).flags


def test_open_graph_without_image() -> None:
    assert page(with_metadata(openGraph=[{"property": "og:title", "content": "x"}])).media == {}
    assert page(with_metadata(openGraph="junk")).media == {}


def test_missing_metadata_and_text() -> None:
    item = page({"url": "https://northwind.example/x"})
    assert item.title is None
    assert item.text_primary == ""
    assert item.text_secondary is None
    assert item.flags == {"is_collection_page": False, "is_low_value": True}


@pytest.mark.parametrize(
    "raw", [{"error": "Timeout", "url": "https://x.example"}, {"noResults": True}]
)
def test_error_items(raw: dict[str, object]) -> None:
    assert run(raw) == Skip("error_item")
