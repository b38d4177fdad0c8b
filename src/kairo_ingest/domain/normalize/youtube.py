"""YouTube channel videos (streamers~youtube-scraper).

- external_id = ``id``; canonical_url = ``url`` (else ``https://www.youtube.com/watch?v=<id>``);
  published_at = ``date`` (ISO or a bare date; relative text such as "10 months ago" is null,
  not a guess); author_ref = ``channelId``; title = text_primary = ``title``;
  text_secondary = ``text`` (the description); hashtags = ``hashtags``.
- metrics: views = ``viewCount``, likes = ``likes`` (often null), comments = ``commentsCount``.
- media: thumbnail_url, duration_seconds (from ``"HH:MM:SS"``).
- flags: is_members_only, is_paid, comments_off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kairo_ingest.domain import registry, statuses
from kairo_ingest.domain.normalize import base, dates

_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DURATION = re.compile(r"(?:(\d{1,4}):)?([0-5]?\d):([0-5]\d)")


def duration_seconds(value: object) -> int | None:
    """``"00:27:11"`` or ``"4:05"`` as seconds; a plain number is taken as seconds."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            return None
        hours, minutes, seconds = (int(part or 0) for part in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return base.count(value)


def normalize(
    raw: Mapping[str, object], spec: registry.ActorSpec
) -> base.NormalizedItem | base.Skip:
    external_id = base.identifier(raw.get("id"), "id")
    if external_id is None:
        return base.Skip(base.MISSING_ID)
    canonical_url = base.url(raw.get("url"), "url")
    if canonical_url is None:
        if not _VIDEO_ID.fullmatch(external_id):
            return base.Skip(base.MISSING_URL)
        canonical_url = f"https://www.youtube.com/watch?v={external_id}"

    title = base.text(raw.get("title"), "title")
    description = base.soft_text(raw.get("text"))
    hashtags = base.hashtags_from_list(raw.get("hashtags"))
    if hashtags is None:
        hashtags = base.hashtags_from_text(description or "")

    metrics: dict[str, int] = {}
    base.put_count(metrics, "views", raw.get("viewCount"))
    base.put_count(metrics, "likes", raw.get("likes"))
    base.put_count(metrics, "comments", raw.get("commentsCount"))

    media: dict[str, base.JsonScalar] = {}
    base.put(media, "thumbnail_url", base.soft_url(raw.get("thumbnailUrl")))
    base.put(media, "duration_seconds", duration_seconds(raw.get("duration")))

    flags: dict[str, base.JsonScalar] = {}
    base.put(flags, "is_members_only", base.boolean(raw.get("isMembersOnly")))
    base.put(flags, "is_paid", base.boolean(raw.get("isPaidContent")))
    base.put(flags, "comments_off", base.boolean(raw.get("commentsTurnedOff")))

    return base.NormalizedItem(
        platform=statuses.Platform.YOUTUBE,
        content_type=spec.content_type,
        external_id=external_id,
        canonical_url=canonical_url,
        published_at=dates.parse_iso(raw.get("date")),
        author_ref=base.soft_text(raw.get("channelId")) or "",
        title=title,
        text_primary=title or "",
        text_secondary=description,
        hashtags=hashtags,
        metrics=metrics,
        media=media,
        flags=flags,
    )
