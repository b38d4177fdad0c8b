"""LinkedIn company posts and profile posts (apimaestro~linkedin-company-posts / -profile-posts).

- external_id = ``activity_urn``, else ``full_urn``. A ``urn:li:activity:<n>`` full urn gives
  ``<n>``, the same value activity_urn would have, so both spellings dedupe together; any other
  urn (``urn:li:ugcPost:...``) is kept whole.
- canonical_url = ``post_url`` (else the ``/feed/update/<urn>/`` URL of the id).
- published_at = ``posted_at.timestamp`` (epoch milliseconds), else ``posted_at.date``.
  The date has no zone and, in captured runs, is the scraper's local time (the sample's
  ``20:00:09`` is timestamp ``...409202`` = 19:00:09 UTC), so the unambiguous timestamp wins;
  a date alone is read as UTC.
- author_ref = ``author.company_url`` (profile posts: ``author.profile_url``); text_primary =
  ``text``; hashtags from the text.
- metrics: reactions = ``stats.total_reactions``, likes = ``stats.like``, comments =
  ``stats.total_comments``, reposts = ``stats.reposts``. The actor only writes keys that are
  non-zero, so when ``stats`` is an object a **missing key is a known 0**; when ``stats``
  itself is missing every metric is unknown. Null or -1 is unknown.
- media: type, item_count, post_type. flags: is_edited, is_low_value (no text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kairo_ingest.domain import registry, statuses
from kairo_ingest.domain.normalize import base, dates

_ACTIVITY_URN = re.compile(r"urn:li:activity:([0-9]{1,30})")
_URN = re.compile(r"urn:li:[A-Za-z]+:[0-9]{1,30}")
_NUMERIC = re.compile(r"[0-9]{1,30}")

# The actor writes only non-zero stats keys, so a key missing from a present ``stats`` object
# is a real 0. Set to False to read it as unknown (the key is then omitted) instead.
OMITTED_STATS_ARE_ZERO = True

# metric key -> stats key
STATS = {
    "reactions": "total_reactions",
    "likes": "like",
    "comments": "total_comments",
    "reposts": "reposts",
}


def _external_id(raw: Mapping[str, object]) -> str | None:
    activity = base.identifier(raw.get("activity_urn"), "activity_urn")
    if activity is not None:
        match = _ACTIVITY_URN.fullmatch(activity)
        return match.group(1) if match else activity
    full = base.identifier(raw.get("full_urn"), "full_urn")
    if full is None:
        return None
    match = _ACTIVITY_URN.fullmatch(full)
    return match.group(1) if match else full


def _fallback_url(external_id: str) -> str | None:
    if _NUMERIC.fullmatch(external_id):
        return f"https://www.linkedin.com/feed/update/urn:li:activity:{external_id}/"
    if _URN.fullmatch(external_id):
        return f"https://www.linkedin.com/feed/update/{external_id}/"
    return None


def _metrics(stats: object) -> dict[str, int]:
    metrics: dict[str, int] = {}
    if not isinstance(stats, Mapping):
        return metrics
    for metric, key in STATS.items():
        if key not in stats:
            if OMITTED_STATS_ARE_ZERO:
                metrics[metric] = 0
        else:
            base.put_count(metrics, metric, stats[key])
    return metrics


def normalize(
    raw: Mapping[str, object], spec: registry.ActorSpec
) -> base.NormalizedItem | base.Skip:
    external_id = _external_id(raw)
    if external_id is None:
        return base.Skip(base.MISSING_ID)
    canonical_url = base.url(raw.get("post_url"), "post_url") or _fallback_url(external_id)
    if canonical_url is None:
        return base.Skip(base.MISSING_URL)

    text = base.text(raw.get("text"), "text")
    posted_at = raw.get("posted_at")
    published_at = (
        dates.from_epoch_millis(base.get(posted_at, "timestamp"))
        or dates.parse_iso(base.get(posted_at, "date"))
        or dates.parse_iso(posted_at)
    )
    author_key = (
        "profile_url" if spec.capability == statuses.Capability.PROFILE_POSTS else "company_url"
    )

    post_media = base.mapping(raw.get("media"))
    media: dict[str, base.JsonScalar] = {}
    base.put(media, "type", base.soft_text(post_media.get("type")))
    items = post_media.get("items")
    if isinstance(items, list):
        media["item_count"] = len(items)
    base.put(media, "post_type", base.soft_text(raw.get("post_type")))

    flags: dict[str, base.JsonScalar] = {"is_low_value": text is None}
    base.put(flags, "is_edited", base.boolean(base.get(posted_at, "is_edited")))

    return base.NormalizedItem(
        platform=statuses.Platform.LINKEDIN,
        content_type=spec.content_type,
        external_id=external_id,
        canonical_url=canonical_url,
        published_at=published_at,
        author_ref=base.soft_text(base.get(raw, "author", author_key)) or "",
        title=None,
        text_primary=text or "",
        text_secondary=None,
        hashtags=base.hashtags_from_text(text or ""),
        metrics=_metrics(raw.get("stats")),
        media=media,
        flags=flags,
    )
