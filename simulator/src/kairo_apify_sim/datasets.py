"""Deterministic dataset items in the real shapes of the actors we run.

Everything here is a pure function of its arguments, so a test can ask what a run served
without talking to the server: :func:`served_plan` lists each row's kind (content or
poison) and the distinct content ids.

Content ids come from the *source* (the handle or URL in the input) and the row index, not
from the run: two runs for the same source serve overlapping ids, as real re-scrapes do.
Which rows are poison (error items, items without an id, empty items) or duplicates (a
repeat of an earlier content row) depends on the run too.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from kairo_apify_sim import config as sim_config

# Input fields that cap how many items an actor returns, as the actors name them.
LIMIT_KEYS = ("resultsLimit", "resultsPerPage", "maxResults", "limit", "maxCrawlPages", "maxItems")
# Input fields that name what is scraped, most specific first.
SOURCE_KEYS = (
    "username",
    "usernames",
    "profiles",
    "directUrls",
    "company_name",
    "companyName",
    "companyUrl",
    "profileUrl",
    "channelUrls",
    "startUrls",
    "urls",
    "url",
    "handle",
)
INSTAGRAM = frozenset({"apify~instagram-scraper", "apify~instagram-reel-scraper"})
TIKTOK = "clockworks~tiktok-scraper"
YOUTUBE = "streamers~youtube-scraper"
LINKEDIN_COMPANY = "apimaestro~linkedin-company-posts"
LINKEDIN_PROFILE = "apimaestro~linkedin-profile-posts"
WEBSITE = "apify~website-content-crawler"
BASE_TIME = dt.datetime(2026, 1, 7, 12, 0, tzinfo=dt.UTC)
DUPLICATE_LOOKBACK = 8  # rows searched backwards for the content row a duplicate repeats

RowKind = Literal["content", "error", "no_id", "empty", "duplicate"]
POISON_KINDS = frozenset({"error", "no_id", "empty"})


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """What a run scrapes: a display handle and the key its content ids derive from."""

    handle: str
    key: str


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One dataset row. ``content_row`` is the row whose content it carries, if any."""

    index: int
    kind: RowKind
    content_row: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetPlan:
    """What a run's dataset holds: every row, and the distinct content ids in served order."""

    rows: tuple[Row, ...]
    content_ids: tuple[str, ...]

    @property
    def item_count(self) -> int:
        return len(self.rows)

    def count(self, kind: RowKind) -> int:
        return sum(1 for row in self.rows if row.kind == kind)

    @property
    def poison_count(self) -> int:
        return sum(1 for row in self.rows if row.kind in POISON_KINDS)


def normalize_actor(actor_id: str) -> str:
    return urllib.parse.unquote(actor_id).replace("/", "~").lower()


def item_cap(run_input: object, max_items: int | None) -> int | None:
    """The least of ``maxItems`` and the input's own limit fields, when any is set."""
    caps = [max_items] if max_items is not None and max_items >= 0 else []
    if isinstance(run_input, Mapping):
        for key in LIMIT_KEYS:
            value = run_input.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                caps.append(value)
    return min(caps) if caps else None


def _first_string(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, list) and value:
        return _first_string(value[0])
    if isinstance(value, Mapping):
        return _first_string(value.get("url"))
    return None


def _handle_from(text: str) -> str:
    if "://" in text:
        parsed = urllib.parse.urlparse(text)
        parts = [part for part in parsed.path.split("/") if part]
        ignored = {"company", "in", "channel", "c", "user", "posts"}
        meaningful = [part for part in parts if part not in ignored]
        text = meaningful[-1] if meaningful else parsed.netloc
    return text.lstrip("@").lower()


def source_of(run_input: object) -> Source:
    """The source a run scrapes, read from the first source-like input field."""
    if isinstance(run_input, Mapping):
        for key in SOURCE_KEYS:
            found = _first_string(run_input.get(key))
            if found:
                handle = _handle_from(found)
                return Source(handle=handle or "acme", key=f"{key}:{handle}")
        rest = {k: v for k, v in run_input.items() if k not in LIMIT_KEYS}
    else:
        rest = {"input": run_input}
    digest = hashlib.blake2b(
        json.dumps(rest, sort_keys=True, default=str).encode(), digest_size=6
    ).hexdigest()
    return Source(handle="acme", key=f"input:{digest}")


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).digest()


def _unit(*parts: object) -> float:
    """A deterministic float in [0, 1)."""
    return int.from_bytes(_digest(*parts)[:7], "big") / float(1 << 56)


def _number(*parts: object, digits: int = 19) -> str:
    low = 10 ** (digits - 1)
    return str(low + int.from_bytes(_digest(*parts)[:8], "big") % (9 * low))


def _small(*parts: object, high: int) -> int:
    return int.from_bytes(_digest(*parts)[:4], "big") % max(1, high)


def _base_kind(
    cfg: sim_config.SimConfig, actor: str, source_key: str, run_id: str, index: int
) -> RowKind:
    u = _unit(cfg.seed, actor, source_key, run_id, index, "kind")
    bands: tuple[tuple[RowKind, float], ...] = (
        ("error", cfg.error_item_share),
        ("no_id", cfg.missing_id_share),
        ("empty", cfg.empty_item_share),
        ("duplicate", cfg.duplicate_share if index > 0 else 0.0),
    )
    edge = 0.0
    for kind, share in bands:
        edge += share
        if u < edge:
            return kind
    return "content"


def row_kind(
    cfg: sim_config.SimConfig, actor: str, source_key: str, run_id: str, index: int
) -> Row:
    """The kind of row ``index`` of this run's dataset.

    A duplicate repeats one of the few content rows just before it; when none is near, the
    row is plain content.
    """
    kind = _base_kind(cfg, actor, source_key, run_id, index)
    if kind == "content":
        return Row(index, "content", index)
    if kind != "duplicate":
        return Row(index, kind, None)
    start = index - 1 - _small(cfg.seed, run_id, index, "dup", high=min(index, 4))
    for candidate in range(start, max(-1, start - DUPLICATE_LOOKBACK), -1):
        if _base_kind(cfg, actor, source_key, run_id, candidate) == "content":
            return Row(index, "duplicate", candidate)
    return Row(index, "content", index)


def content_id(actor_id: str, source: Source, content_row: int) -> str:
    """The stable id of a content item, as the actor's items carry it."""
    actor = normalize_actor(actor_id)
    if actor == YOUTUBE:
        raw = _digest(actor, source.key, content_row)[:8]
        return base64.urlsafe_b64encode(raw).decode()[:11]
    if actor == WEBSITE:
        return f"https://{_domain(source)}/page-{content_row}/"
    return _number(actor, source.key, content_row)


def served_plan(
    cfg: sim_config.SimConfig, actor_id: str, run_id: str, run_input: object, item_count: int
) -> DatasetPlan:
    """Every row of a run's dataset and its distinct content ids, in served order."""
    actor = normalize_actor(actor_id)
    source = source_of(run_input)
    rows = tuple(row_kind(cfg, actor, source.key, run_id, i) for i in range(item_count))
    seen: dict[str, None] = {}
    for row in rows:
        if row.content_row is not None:
            seen.setdefault(content_id(actor, source, row.content_row), None)
    return DatasetPlan(rows=rows, content_ids=tuple(seen))


def items_window(
    cfg: sim_config.SimConfig,
    actor_id: str,
    run_id: str,
    run_input: object,
    *,
    total: int,
    offset: int,
    limit: int,
    desc: bool = False,
) -> Iterator[dict[str, Any]]:
    """The items of rows ``offset .. offset+limit`` (counted from the end when ``desc``)."""
    actor = normalize_actor(actor_id)
    source = source_of(run_input)
    stop = min(total, offset + limit)
    for position in range(max(0, offset), stop):
        index = total - 1 - position if desc else position
        yield render_item(actor, source, row_kind(cfg, actor, source.key, run_id, index))


def render_item(actor_id: str, source: Source, row: Row) -> dict[str, Any]:
    """The JSON item for a row, in the actor's real shape."""
    actor = normalize_actor(actor_id)
    if row.kind == "empty":
        return {}
    if row.kind == "error":
        return _error_item(actor, source)
    assert row.content_row is not None or row.kind == "no_id"
    content_row = row.content_row if row.content_row is not None else row.index
    item = _content_item(actor, source, content_row)
    if row.kind == "no_id":
        for key in _ID_FIELDS.get(actor, ("id",)):
            parent, _, child = key.rpartition(".")
            holder = item.get(parent) if parent else item
            if isinstance(holder, dict):
                holder.pop(child, None)
    return item


# --------------------------------------------------------------------------- shapes

_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "apify~instagram-scraper": ("id", "shortCode", "url"),
    "apify~instagram-reel-scraper": ("id", "shortCode", "url"),
    TIKTOK: ("id", "webVideoUrl"),
    YOUTUBE: ("id", "url"),
    LINKEDIN_COMPANY: ("activity_urn", "full_urn", "post_url"),
    LINKEDIN_PROFILE: ("activity_urn", "full_urn", "post_url"),
    WEBSITE: ("url", "metadata.canonicalUrl"),
}


def _domain(source: Source) -> str:
    handle = source.handle
    return handle if "." in handle else f"{handle}.example"


def _when(source: Source, row: int) -> dt.datetime:
    minutes = _small(source.key, row, "minutes", high=180)
    return BASE_TIME - dt.timedelta(hours=3 * row, minutes=minutes)


def _iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short_code(*parts: object) -> str:
    return base64.urlsafe_b64encode(_digest(*parts)[:8]).decode()[:11]


def _error_item(actor: str, source: Source) -> dict[str, Any]:
    item: dict[str, Any] = {
        "error": "no_items",
        "errorDescription": "Empty or private data for provided input",
    }
    if actor in INSTAGRAM:
        url = f"https://www.instagram.com/{source.handle}/"
        return {"inputUrl": url, "url": url, "requestErrorMessages": []} | item
    if actor == TIKTOK:
        return {"input": source.handle} | item
    if actor == WEBSITE:
        return {"url": f"https://{_domain(source)}/"} | item
    return item


def _content_item(actor: str, source: Source, row: int) -> dict[str, Any]:
    if actor in INSTAGRAM:
        return _instagram(actor, source, row)
    builder = _BUILDERS.get(actor)
    if builder is not None:
        return builder(actor, source, row)
    return {
        "id": content_id(actor, source, row),
        "title": f"Item {row} of {source.handle}",
        "createdAt": _iso(_when(source, row)),
    }


def _instagram(actor: str, source: Source, row: int) -> dict[str, Any]:
    handle = source.handle
    code = _short_code(actor, source.key, row, "code")
    is_video = actor == "apify~instagram-reel-scraper" or _small(source.key, row, high=3) == 0
    hidden_likes = _small(source.key, row, "likes", high=10) == 0
    item: dict[str, Any] = {
        "inputUrl": f"https://www.instagram.com/{handle}/",
        "id": content_id(actor, source, row),
        "type": "Video" if is_video else "Image",
        "shortCode": code,
        "url": f"https://www.instagram.com/p/{code}/",
        "caption": f"Post {row} from {handle} #{handle}",
        "hashtags": [handle],
        "mentions": [handle],
        "commentsCount": _small(source.key, row, "comments", high=200),
        "likesCount": -1 if hidden_likes else _small(source.key, row, "l", high=50_000),
        "timestamp": _iso(_when(source, row)),
        "ownerUsername": handle,
        "ownerFullName": handle.title(),
        "ownerId": _number("owner", source.key, digits=9),
        "productType": "clips" if is_video else "feed",
        "paidPartnership": _small(source.key, row, "paid", high=8) == 0,
        "latestComments": [
            {
                "id": _number("comment", source.key, row, digits=17),
                "text": "nice",
                "ownerUsername": "someone",
                "timestamp": _iso(_when(source, row) + dt.timedelta(hours=2)),
            }
        ],
    }
    if is_video:
        item["videoViewCount"] = _small(source.key, row, "views", high=500_000)
        item["videoPlayCount"] = _small(source.key, row, "plays", high=5_000_000)
        item["videoDuration"] = round(5 + _unit(source.key, row, "dur") * 80, 1)
        item["musicInfo"] = {"audio_id": _number("audio", row, digits=17), "song_name": "Original"}
    if actor == "apify~instagram-reel-scraper":
        item["transcript"] = f"Transcript of reel {row}"
        item["dimensionsHeight"] = 1920
        item["dimensionsWidth"] = 1080
    return item


def _tiktok(actor: str, source: Source, row: int) -> dict[str, Any]:
    handle = source.handle
    video_id = content_id(actor, source, row)
    created = _when(source, row)
    return {
        "id": video_id,
        "text": f"Video {row} #{handle}",
        "textLanguage": "en",
        "createTime": int(created.timestamp()),
        "createTimeISO": _iso(created),
        "isAd": False,
        "webVideoUrl": f"https://www.tiktok.com/@{handle}/video/{video_id}",
        "playCount": _small(source.key, row, "plays", high=100_000),
        "diggCount": _small(source.key, row, "diggs", high=5_000),
        "shareCount": _small(source.key, row, "shares", high=100),
        "commentCount": _small(source.key, row, "comments", high=300),
        "collectCount": 0,
        "repostCount": 0,
        "authorMeta": {
            "id": _number("author", source.key),
            "name": handle,
            "nickName": handle.title(),
            "fans": 190_000,
            "verified": False,
        },
        "videoMeta": {"height": 1280, "width": 720, "duration": 10 + row % 60, "coverUrl": ""},
        "hashtags": [{"name": handle}],
        "mentions": [],
        "isSlideshow": False,
        "isPinned": row == 0,
        "isSponsored": False,
        "input": handle,
        "fromProfileSection": "videos",
    }


def _youtube(actor: str, source: Source, row: int) -> dict[str, Any]:
    handle = source.handle
    video_id = content_id(actor, source, row)
    channel_id = "UC" + _short_code("channel", source.key) + "AbCdEfGhIjK"
    date_form = _small(source.key, row, "date", high=4)
    when = _when(source, row)
    date: str = _iso(when) if date_form < 2 else when.date().isoformat()
    if date_form == 3:
        date = f"{1 + row % 11} months ago"
    return {
        "title": f"Video {row} of {handle}",
        "type": "video",
        "id": video_id,
        "url": f"https://www.youtube.com/watch?v={video_id}",
        "thumbnailUrl": f"https://i.ytimg.com/vi/{video_id}/maxresdefault.jpg",
        "viewCount": _small(source.key, row, "views", high=100_000),
        "date": date,
        "likes": None if row % 7 == 3 else _small(source.key, row, "likes", high=900),
        "channelName": handle.title(),
        "channelUrl": f"https://www.youtube.com/channel/{channel_id}",
        "channelUsername": handle,
        "channelId": channel_id,
        "numberOfSubscribers": 86_400,
        "duration": f"00:{10 + row % 40:02d}:11",
        "commentsCount": _small(source.key, row, "comments", high=50),
        "text": f"Description of video {row}",
        "hashtags": [],
        "isMembersOnly": False,
        "isPaidContent": False,
        "commentsTurnedOff": False,
        "fromChannelListPage": "videos",
    }


def _linkedin(actor: str, source: Source, row: int) -> dict[str, Any]:
    handle = source.handle
    urn = content_id(actor, source, row)
    when = _when(source, row)
    stats: dict[str, int] = {"total_reactions": _small(source.key, row, "r", high=40)}
    if stats["total_reactions"]:
        stats["like"] = stats["total_reactions"]
    item: dict[str, Any] = {
        "activity_urn": urn,
        "full_urn": f"urn:li:{'ugcPost' if row % 5 == 4 else 'activity'}:{urn}",
        "post_url": f"https://www.linkedin.com/posts/{handle}_post-{row}-activity-{urn}-zPYC",
        "text": f"Post {row} from {handle} #growth",
        "posted_at": {
            "relative": f"{row + 1}d",
            "is_edited": False,
            "date": when.strftime("%Y-%m-%d %H:%M:%S"),
            "timestamp": int(when.timestamp() * 1000),
        },
        "post_language_code": "en",
        "post_type": "regular",
        "stats": stats,
        "media": {"type": "image", "items": [{"url": "https://media.example/1.jpg"}]},
        "document": None,
    }
    if actor == LINKEDIN_COMPANY:
        item["author"] = {
            "name": handle.title(),
            "follower_count": 77_160,
            "company_url": f"https://www.linkedin.com/company/{handle}/posts",
        }
        item["source_company"] = handle
    else:
        item["author"] = {
            "first_name": handle.title(),
            "last_name": "",
            "username": handle,
            "profile_url": f"https://www.linkedin.com/in/{handle}",
        }
    return item


def _website(actor: str, source: Source, row: int) -> dict[str, Any]:
    url = content_id(actor, source, row)
    domain = _domain(source)
    crawl: dict[str, Any] = {
        "loadedUrl": url,
        "loadedTime": _iso(BASE_TIME + dt.timedelta(seconds=row)),
        "referrerUrl": f"https://{domain}/",
        "depth": 0 if row == 0 else 1,
    }
    if row % 9 != 8:
        crawl["httpStatusCode"] = 200
    return {
        "url": url,
        "crawl": crawl,
        "metadata": {
            "canonicalUrl": url,
            "title": f"Page {row} | {source.handle.title()}",
            "description": f"What page {row} is about",
            "author": None,
            "keywords": None,
            "languageCode": "en-US",
            "openGraph": [{"property": "og:image", "content": f"https://{domain}/og.jpg"}],
            "jsonLd": [],
        },
        "text": f"Page {row}\nSome text about {source.handle}.",
        "markdown": f"# Page {row}",
    }


_BUILDERS = {
    TIKTOK: _tiktok,
    YOUTUBE: _youtube,
    LINKEDIN_COMPANY: _linkedin,
    LINKEDIN_PROFILE: _linkedin,
    WEBSITE: _website,
}
