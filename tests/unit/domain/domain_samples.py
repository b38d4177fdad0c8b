"""Made-up raw items in the real actor shapes of ``reference/actor-samples.md``.

Call :func:`sample` for a fresh deep copy that a test may change freely.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, settings

from support import properties

# Deterministic and quick: applied per test, so other suites' hypothesis settings are untouched.
# 150 examples, or the inner loop's few (support.properties).
PROPERTY_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=properties.examples(150),
    suppress_health_check=[HealthCheck.too_slow],
)

INSTAGRAM_POST: dict[str, Any] = {
    "inputUrl": "https://www.instagram.com/northwind/",
    "id": "3712345678901234567",
    "type": "Video",
    "shortCode": "DQxYz12AbCd",
    "url": "https://www.instagram.com/p/DQxYz12AbCd/",
    "caption": "Spring collection is here #northwind #Spring",
    "hashtags": ["northwind", "Spring"],
    "mentions": ["northwind"],
    "commentsCount": 41,
    "likesCount": -1,
    "videoViewCount": 98213,
    "videoPlayCount": 1203311,
    "videoDuration": 21.7,
    "timestamp": "2025-11-02T08:15:00.000Z",
    "ownerUsername": "northwind",
    "ownerFullName": "Northwind",
    "ownerId": "902114577",
    "productType": "clips",
    "paidPartnership": False,
    "musicInfo": {"audio_id": "1187766554433221", "song_name": "Original audio"},
    "latestComments": [
        {
            "id": "17999888777666555",
            "text": "love it",
            "ownerUsername": "fan_1",
            "timestamp": "2025-11-03T10:00:00.000Z",
        }
    ],
}

INSTAGRAM_CAROUSEL_CHILD: dict[str, Any] = {
    "id": "3712345678901234999",
    "type": "Image",
    "shortCode": "DQxYz99ZzZz",
    "url": "https://www.instagram.com/p/DQxYz99ZzZz/",
    "caption": None,
    "hashtags": [],
    "commentsCount": 0,
    "likesCount": None,
    "timestamp": None,
    "ownerUsername": "northwind",
    "ownerId": "902114577",
}

INSTAGRAM_REEL: dict[str, Any] = {
    **copy.deepcopy(INSTAGRAM_POST),
    "id": "3712345678901230001",
    "shortCode": "DRreel0001x",
    "url": "https://www.instagram.com/reel/DRreel0001x/",
    "likesCount": 5120,
    "transcript": "Hi everyone, today we show the spring line.",
    "dimensionsHeight": 1920,
    "dimensionsWidth": 1080,
}

INSTAGRAM_ERROR: dict[str, Any] = {
    "inputUrl": "https://www.instagram.com/private_brand/",
    "url": "https://www.instagram.com/private_brand/",
    "requestErrorMessages": [],
    "error": "no_items",
    "errorDescription": "Empty or private data for provided input",
}

TIKTOK_VIDEO: dict[str, Any] = {
    "id": "7588123456789012345",
    "text": "Behind the scenes #northwind #BTS",
    "textLanguage": "en",
    "createTime": 1767000000,
    "createTimeISO": "2025-12-29T09:20:00.000Z",
    "isAd": False,
    "webVideoUrl": "https://www.tiktok.com/@northwind/video/7588123456789012345",
    "playCount": 1204,
    "diggCount": 77,
    "shareCount": 0,
    "commentCount": 5,
    "collectCount": 3,
    "repostCount": 0,
    "authorMeta": {
        "id": "6801234567890123456",
        "name": "northwind",
        "nickName": "Northwind",
        "fans": 48200,
        "verified": True,
    },
    "videoMeta": {
        "height": 1920,
        "width": 1080,
        "duration": 34,
        "coverUrl": "https://p16.tiktokcdn.example/cover.jpeg",
    },
    "hashtags": [{"name": "northwind"}, {"name": "BTS"}],
    "mentions": [],
    "isSlideshow": False,
    "isPinned": False,
    "isSponsored": True,
    "input": "northwind",
    "fromProfileSection": "videos",
}

YOUTUBE_VIDEO: dict[str, Any] = {
    "title": "How we build it",
    "type": "video",
    "id": "Zx9_Ab-Cd12",
    "url": "https://www.youtube.com/watch?v=Zx9_Ab-Cd12",
    "thumbnailUrl": "https://i.ytimg.com/vi/Zx9_Ab-Cd12/maxresdefault.jpg",
    "viewCount": 1520,
    "date": "2025-09-01T14:00:00.000Z",
    "likes": 33,
    "channelName": "Northwind",
    "channelUrl": "https://www.youtube.com/channel/UCabcdefghijklmnopqrstuv",
    "channelUsername": "NorthwindHQ",
    "channelId": "UCabcdefghijklmnopqrstuv",
    "numberOfSubscribers": 12000,
    "channelTotalViews": "1,234,567",
    "duration": "00:12:05",
    "commentsCount": 9,
    "text": "In this video we walk through #making things.",
    "hashtags": ["#making"],
    "isMembersOnly": False,
    "isPaidContent": True,
    "commentsTurnedOff": False,
    "fromChannelListPage": "videos",
}

LINKEDIN_COMPANY_POST: dict[str, Any] = {
    "activity_urn": "7401234567890123456",
    "full_urn": "urn:li:activity:7401234567890123456",
    "post_url": "https://www.linkedin.com/posts/northwind_launch-activity-7401234567890123456-AbCd",
    "text": "We are hiring! #Hiring #growth\nJoin us.",
    "posted_at": {
        "relative": "2h",
        "is_edited": False,
        "date": "2026-01-05 11:30:00",
        "timestamp": 1767609000000,
    },
    "post_language_code": "en",
    "post_type": "regular",
    "author": {
        "name": "Northwind",
        "follower_count": 5120,
        "company_url": "https://www.linkedin.com/company/northwind/posts",
    },
    "stats": {"total_reactions": 12, "like": 10, "love": 2},
    "media": {
        "type": "image",
        "items": [{"url": "https://media.licdn.example/1.jpg", "width": 1200, "height": 628}],
    },
    "document": None,
    "source_company": "northwind",
}

LINKEDIN_PROFILE_POST: dict[str, Any] = {
    **copy.deepcopy(LINKEDIN_COMPANY_POST),
    "activity_urn": "7401234567890999999",
    "full_urn": "urn:li:ugcPost:7401234567890888888",
    "post_url": "https://www.linkedin.com/posts/jane-doe_activity-7401234567890999999-XyZw",
    "author": {
        "name": "Jane Doe",
        "profile_url": "https://www.linkedin.com/in/jane-doe",
    },
}

WEB_PAGE: dict[str, Any] = {
    "url": "https://northwind.example/blog/",
    "crawl": {
        "loadedUrl": "https://northwind.example/blog/",
        "loadedTime": "2026-01-07T19:52:32.145Z",
        "referrerUrl": "https://northwind.example/blog/",
        "depth": 0,
        "httpStatusCode": 200,
    },
    "metadata": {
        "canonicalUrl": "https://Northwind.example/blog/#top",
        "title": "Blog | Northwind",
        "description": "Notes from the workshop",
        "author": None,
        "keywords": None,
        "languageCode": "en-US",
        "openGraph": [
            {"property": "og:title", "content": "Blog"},
            {"property": "og:image", "content": "https://northwind.example/og.jpg"},
        ],
        "jsonLd": [
            {
                "@context": "https://schema.org",
                "@graph": [
                    {
                        "@type": ["WebPage", "CollectionPage"],
                        "datePublished": "2021-03-17T13:58:16+00:00",
                    }
                ],
            }
        ],
    },
    "text": "Blog\nAll articles from the workshop...",
    "markdown": "# Blog",
}

SAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("instagram", "posts"): INSTAGRAM_POST,
    ("instagram", "reels"): INSTAGRAM_REEL,
    ("linkedin", "company_posts"): LINKEDIN_COMPANY_POST,
    ("linkedin", "profile_posts"): LINKEDIN_PROFILE_POST,
    ("tiktok", "profile_videos"): TIKTOK_VIDEO,
    ("youtube", "channel_videos"): YOUTUBE_VIDEO,
    ("web", "crawl_pages"): WEB_PAGE,
}


def sample(item: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``item`` with top-level keys replaced (a value of ``DROP`` removes one)."""
    result = copy.deepcopy(item)
    for key, value in changes.items():
        if value is DROP:
            result.pop(key, None)
        else:
            result[key] = value
    return result


DROP = object()
