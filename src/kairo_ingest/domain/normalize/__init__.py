"""Normalizers: one raw actor item in, a :class:`NormalizedItem` or a typed :class:`Skip` out.

Usage::

    from kairo_ingest.domain import normalize

    result = normalize.normalize("instagram", "posts", raw_json)
    if isinstance(result, normalize.Skip):
        ...  # store result.reason as raw_apify_items.skip_reason

Skip reasons:

- ``invalid_field:item``: the raw item is not a JSON object;
- ``error_item``: an error item (``error``, ``errorDescription`` or ``noResults``), which
  actors push even into SUCCEEDED datasets;
- ``missing_id``: a non-web item without a stable id;
- ``missing_url``: no canonical URL (for web items, never merged into one);
- ``invalid_field:<name>``: an id, URL or primary text of a type that cannot be read.

For any raw value, :func:`normalize` returns and never raises (property-tested); only an
unknown (platform, capability) pair raises :class:`~kairo_ingest.errors.UsageError`, since
that is a caller's bug, not a bad item. The field mappings live in one module per platform.

Text fields longer than ``limits.MAX_TEXT_CHARS`` (20,000) are cut, and named in
``flags["truncated"]``; the raw item keeps them whole (:mod:`.limits`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kairo_ingest.domain import registry, statuses
from kairo_ingest.domain.normalize import (
    base,
    instagram,
    limits,
    linkedin,
    merge,
    tiktok,
    web,
    youtube,
)

NormalizedItem = base.NormalizedItem
Skip = base.Skip
clean_text = base.clean
merge_raw_refs = merge.merge_raw_refs
merge_update = merge.merge_update

_Normalizer = Callable[[Mapping[str, object], registry.ActorSpec], base.NormalizedItem | base.Skip]

_BY_PLATFORM: dict[statuses.Platform, _Normalizer] = {
    statuses.Platform.INSTAGRAM: instagram.normalize,
    statuses.Platform.LINKEDIN: linkedin.normalize,
    statuses.Platform.TIKTOK: tiktok.normalize,
    statuses.Platform.YOUTUBE: youtube.normalize,
    statuses.Platform.WEB: web.normalize,
}


def normalize(platform: str, capability: str, raw: object) -> base.NormalizedItem | base.Skip:
    """Normalize one raw item of a (platform, capability) source."""
    spec = registry.get_spec(platform, capability)
    if not isinstance(raw, Mapping):
        return base.invalid_field("item")
    if base.is_error_item(raw):
        return base.Skip(base.ERROR_ITEM)
    try:
        result = _BY_PLATFORM[spec.platform](raw, spec)
    except base.InvalidField as exc:
        return base.invalid_field(exc.name)
    return limits.truncate(result) if isinstance(result, base.NormalizedItem) else result
