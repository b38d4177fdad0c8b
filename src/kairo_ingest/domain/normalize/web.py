"""Web pages (apify~website-content-crawler).

- No external_id: web items are unique on canonical_url. canonical_url =
  ``metadata.canonicalUrl`` (resolved against the page URL when relative), else ``url``,
  normalized like a web identifier (lowercase scheme and host, no fragment, no trailing
  slash, query kept). A page with neither is ``missing_url``: pages without a URL are never
  merged into one item.
- published_at = the first readable JSON-LD ``datePublished``, at the top level or in
  ``@graph``. author_ref = the domain (host without ``www.``).
- title = ``metadata.title``; text_primary = ``text``; text_secondary = ``metadata.description``.
- media: og_image (the ``og:image`` Open Graph property).
- flags: is_collection_page (a JSON-LD ``CollectionPage``), is_low_value (a collection page or
  text under 200 characters), http_status (``crawl.httpStatusCode``, omitted when missing).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from urllib import parse

from kairo_ingest import errors
from kairo_ingest.domain import identifiers, registry, statuses
from kairo_ingest.domain.normalize import base, dates

LOW_VALUE_TEXT_CHARS = 200


def canonical(value: str, page_url: str | None) -> str | None:
    """``value`` resolved against ``page_url`` and normalized; None when it is not a URL."""
    candidate = base.clean(value).strip()
    if not candidate:
        return None
    if page_url is not None and not base.is_http_url(candidate):
        try:
            candidate = parse.urljoin(page_url, candidate)
        except ValueError:
            return None
    if len(candidate) > base.MAX_URL_CHARS or not base.is_http_url(candidate):
        return None  # over-long: a unique-index key PostgreSQL would refuse
    try:
        return identifiers.normalize_url(candidate, keep_query=True)
    except errors.UsageError:
        return None


def _json_ld_nodes(value: object) -> Iterator[Mapping[str, object]]:
    """Top-level JSON-LD objects, each followed by the objects of its ``@graph``."""
    entries = value if isinstance(value, list) else [value]
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        yield entry
        graph = entry.get("@graph")
        for node in graph if isinstance(graph, list) else [graph]:
            if isinstance(node, Mapping):
                yield node


def _types(node: Mapping[str, object]) -> list[str]:
    kind = node.get("@type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [entry for entry in kind if isinstance(entry, str)]
    return []


def _published_at(json_ld: object) -> dt.datetime | None:
    for node in _json_ld_nodes(json_ld):
        published = dates.parse_iso(node.get("datePublished"))
        if published is not None:
            return published
    return None


def _og_image(open_graph: object) -> str | None:
    if isinstance(open_graph, Mapping):
        return base.soft_url(open_graph.get("og:image"))
    if isinstance(open_graph, list):
        for entry in open_graph:
            if isinstance(entry, Mapping) and entry.get("property") == "og:image":
                image = base.soft_url(entry.get("content"))
                if image is not None:
                    return image
    return None


def domain(url: str) -> str:
    """The host of ``url`` without a leading ``www.``."""
    try:
        host = parse.urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.removeprefix("www.")


def _present(value: object) -> bool:
    """Not null and not a blank string: a value that was meant to be there."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def normalize(
    raw: Mapping[str, object], spec: registry.ActorSpec
) -> base.NormalizedItem | base.Skip:
    metadata = base.mapping(raw.get("metadata"))
    page_url = base.soft_url(raw.get("url"))
    page_canonical = canonical(page_url, None) if page_url is not None else None
    declared = metadata.get("canonicalUrl")
    declared_canonical = canonical(declared, page_canonical) if isinstance(declared, str) else None
    canonical_url = declared_canonical or page_canonical
    if canonical_url is None:
        if _present(raw.get("url")):
            return base.invalid_field("url")
        if _present(declared):
            return base.invalid_field("canonicalUrl")
        return base.Skip(base.MISSING_URL)

    text = base.text(raw.get("text"), "text") or ""
    json_ld = metadata.get("jsonLd")
    is_collection = any("CollectionPage" in _types(node) for node in _json_ld_nodes(json_ld))

    media: dict[str, base.JsonScalar] = {}
    base.put(media, "og_image", _og_image(metadata.get("openGraph")))

    flags: dict[str, base.JsonScalar] = {
        "is_collection_page": is_collection,
        "is_low_value": is_collection or len(text) < LOW_VALUE_TEXT_CHARS,
    }
    status = base.count(base.get(raw, "crawl", "httpStatusCode"))
    if status is not None and 100 <= status <= 999:
        flags["http_status"] = status

    return base.NormalizedItem(
        platform=statuses.Platform.WEB,
        content_type=spec.content_type,
        external_id=None,
        canonical_url=canonical_url,
        published_at=_published_at(json_ld),
        author_ref=domain(canonical_url),
        title=base.soft_text(metadata.get("title")),
        text_primary=text,
        text_secondary=base.soft_text(metadata.get("description")),
        hashtags=(),
        metrics={},
        media=media,
        flags=flags,
    )
