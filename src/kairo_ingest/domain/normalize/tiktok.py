"""TikTok profile videos (clockworks~tiktok-scraper).

- external_id = ``id`` (a 19-digit string, kept a string; taken from ``webVideoUrl`` when
  only the URL is there); canonical_url = ``webVideoUrl`` (else built from the author and the
  id). An item with neither id nor URL is ``missing_id``.
- published_at = ``createTimeISO``, else ``createTime`` (epoch seconds); author_ref =
  ``authorMeta.name``; text_primary = ``text``; hashtags = ``hashtags[].name``.
- metrics: plays, likes (``diggCount``), comments, shares, saves (``collectCount``).
- media: duration, width, height, cover_url (``videoMeta``) and author_fans.
- flags: is_sponsored, is_ad, is_low_value (no text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kairo_ingest.domain import registry, statuses
from kairo_ingest.domain.normalize import base, dates

_VIDEO_ID = re.compile(r"/(?:video|photo)/([0-9]{5,25})(?:[/?#]|$)")
_USERNAME = re.compile(r"[A-Za-z0-9._]{1,64}")


def normalize(
    raw: Mapping[str, object], spec: registry.ActorSpec
) -> base.NormalizedItem | base.Skip:
    external_id = base.identifier(raw.get("id"), "id")
    canonical_url = base.url(raw.get("webVideoUrl"), "webVideoUrl")
    author = base.soft_text(base.get(raw, "authorMeta", "name"))
    if external_id is None and canonical_url is not None:
        match = _VIDEO_ID.search(canonical_url)
        external_id = match.group(1) if match else None
    if external_id is None:
        return base.Skip(base.MISSING_ID)
    if canonical_url is None:
        if author is None or not _USERNAME.fullmatch(author) or "/" in external_id:
            return base.Skip(base.MISSING_URL)
        canonical_url = f"https://www.tiktok.com/@{author}/video/{external_id}"

    text = base.text(raw.get("text"), "text")
    hashtags = base.hashtags_from_list(raw.get("hashtags"), key="name")
    if hashtags is None:
        hashtags = base.hashtags_from_text(text or "")
    published_at = dates.parse_iso(raw.get("createTimeISO")) or dates.from_epoch_seconds(
        raw.get("createTime")
    )

    metrics: dict[str, int] = {}
    base.put_count(metrics, "plays", raw.get("playCount"))
    base.put_count(metrics, "likes", raw.get("diggCount"))
    base.put_count(metrics, "comments", raw.get("commentCount"))
    base.put_count(metrics, "shares", raw.get("shareCount"))
    base.put_count(metrics, "saves", raw.get("collectCount"))

    video = base.mapping(raw.get("videoMeta"))
    media: dict[str, base.JsonScalar] = {}
    base.put(media, "duration", base.number(video.get("duration")))
    base.put(media, "width", base.count(video.get("width")))
    base.put(media, "height", base.count(video.get("height")))
    base.put(media, "cover_url", base.soft_url(video.get("coverUrl")))
    base.put(media, "author_fans", base.count(base.get(raw, "authorMeta", "fans")))

    flags: dict[str, base.JsonScalar] = {"is_low_value": text is None}
    base.put(flags, "is_sponsored", base.boolean(raw.get("isSponsored")))
    base.put(flags, "is_ad", base.boolean(raw.get("isAd")))

    return base.NormalizedItem(
        platform=statuses.Platform.TIKTOK,
        content_type=spec.content_type,
        external_id=external_id,
        canonical_url=canonical_url,
        published_at=published_at,
        author_ref=author or "",
        title=None,
        text_primary=text or "",
        text_secondary=None,
        hashtags=hashtags,
        metrics=metrics,
        media=media,
        flags=flags,
    )
