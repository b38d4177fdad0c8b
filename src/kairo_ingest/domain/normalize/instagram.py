"""Instagram posts (apify~instagram-scraper) and reels (apify~instagram-reel-scraper).

- external_id = ``id``; canonical_url = ``url`` (else built from ``shortCode``);
  published_at = ``timestamp`` (ISO; null on carousel children); author_ref =
  ``ownerUsername``; text_primary = ``caption``; hashtags = ``hashtags`` (else from the
  caption).
- metrics: likes = ``likesCount`` (-1 means hidden: unknown, and ``flags.likes_hidden``),
  comments = ``commentsCount``, views = ``videoViewCount``, plays = ``videoPlayCount``.
- media: type, short_code, owner_id, audio_id (``musicInfo.audio_id``), video_duration, and
  for reels width and height.
- Reels add text_secondary = ``transcript`` and ``flags.has_transcript``. ``is_low_value``
  when there is no caption (reels: no caption and no transcript).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kairo_ingest.domain import registry, statuses
from kairo_ingest.domain.normalize import base, dates

_SHORT_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def normalize(
    raw: Mapping[str, object], spec: registry.ActorSpec
) -> base.NormalizedItem | base.Skip:
    is_reel = spec.capability == statuses.Capability.REELS
    external_id = base.identifier(raw.get("id"), "id")
    if external_id is None:
        return base.Skip(base.MISSING_ID)
    short_code = base.soft_identifier(raw.get("shortCode"))
    canonical_url = base.url(raw.get("url"), "url")
    if canonical_url is None:
        if short_code is None or not _SHORT_CODE.fullmatch(short_code):
            return base.Skip(base.MISSING_URL)
        canonical_url = f"https://www.instagram.com/{'reel' if is_reel else 'p'}/{short_code}/"

    caption = base.text(raw.get("caption"), "caption")
    transcript = base.soft_text(raw.get("transcript")) if is_reel else None
    hashtags = base.hashtags_from_list(raw.get("hashtags"))
    if hashtags is None:
        hashtags = base.hashtags_from_text(caption or "")

    metrics: dict[str, int] = {}
    base.put_count(metrics, "likes", raw.get("likesCount"))
    base.put_count(metrics, "comments", raw.get("commentsCount"))
    base.put_count(metrics, "views", raw.get("videoViewCount"))
    base.put_count(metrics, "plays", raw.get("videoPlayCount"))

    media: dict[str, base.JsonScalar] = {}
    base.put(media, "type", base.soft_text(raw.get("type")))
    base.put(media, "short_code", short_code)
    base.put(media, "owner_id", base.soft_identifier(raw.get("ownerId")))
    base.put(media, "audio_id", base.soft_identifier(base.get(raw, "musicInfo", "audio_id")))
    base.put(media, "video_duration", base.number(raw.get("videoDuration")))
    if is_reel:
        base.put(media, "width", base.count(raw.get("dimensionsWidth")))
        base.put(media, "height", base.count(raw.get("dimensionsHeight")))

    flags: dict[str, base.JsonScalar] = {
        "is_low_value": caption is None and transcript is None,
    }
    if raw.get("likesCount") == -1:
        flags["likes_hidden"] = True
    if is_reel:
        flags["has_transcript"] = transcript is not None
    base.put(flags, "paid_partnership", base.boolean(raw.get("paidPartnership")))
    base.put(flags, "is_pinned", base.boolean(raw.get("isPinned")))

    return base.NormalizedItem(
        platform=statuses.Platform.INSTAGRAM,
        content_type=spec.content_type,
        external_id=external_id,
        canonical_url=canonical_url,
        published_at=dates.parse_iso(raw.get("timestamp")),
        author_ref=base.soft_text(raw.get("ownerUsername")) or "",
        title=None,
        text_primary=caption or "",
        text_secondary=transcript,
        hashtags=hashtags,
        metrics=metrics,
        media=media,
        flags=flags,
    )
