"""The actor registry: which Apify actor serves each (platform, capability), with what input.

=========================  ==============================  ===  ===========
platform.capability        actor                           cap  content
=========================  ==============================  ===  ===========
instagram.posts            apify~instagram-scraper           8  post
instagram.reels            apify~instagram-reel-scraper      6  reel
linkedin.company_posts     apimaestro~linkedin-company-posts 6  text_post
linkedin.profile_posts     apimaestro~linkedin-profile-posts 6  text_post  (flag, off)
tiktok.profile_videos      clockworks~tiktok-scraper         6  short_video
youtube.channel_videos     streamers~youtube-scraper         6  video
web.crawl_pages            apify~website-content-crawler     3  web_page
=========================  ==============================  ===  ===========

Caps are overridden by ``KAIRO_CAP_<PLATFORM>_<CAPABILITY>``, a capability with a feature
flag runs only when ``KAIRO_FEATURE_<PLATFORM>_<CAPABILITY>`` is on, and any pair can be
switched off with ``KAIRO_DISABLED_CAPABILITIES``. Those settings are read and validated
by :mod:`kairo_ingest.config` (a bad value exits 2 naming its variable); this module gets
their values passed in, keyed ``platform.capability``, and reads no environment.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Collection, Iterable, Mapping

from kairo_ingest import errors
from kairo_ingest.domain import identifiers, statuses

UNKNOWN_PAIR_CAP = 6
MAX_CAP = 999_999_999  # the largest KAIRO_CAP_* value (the item_cap column is an integer)
MAX_EXTRA_START_URLS = 2
DISABLED_CAPABILITIES_VARIABLE = "KAIRO_DISABLED_CAPABILITIES"


class ContentType(enum.StrEnum):
    POST = "post"
    REEL = "reel"
    TEXT_POST = "text_post"
    SHORT_VIDEO = "short_video"
    VIDEO = "video"
    WEB_PAGE = "web_page"


InputBuilder = Callable[[str, Mapping[str, object], int], dict[str, object]]
"""``build_input(identifier, settings, cap)`` returns the actor's JSON input."""


@dataclasses.dataclass(frozen=True, slots=True)
class ActorSpec:
    platform: statuses.Platform
    capability: statuses.Capability
    actor_id: str
    content_type: ContentType
    default_cap: int
    feature_flag: str | None
    build_input: InputBuilder

    @property
    def key(self) -> str:
        """``platform.capability``, as in ``KAIRO_DISABLED_CAPABILITIES``."""
        return f"{self.platform.value}.{self.capability.value}"

    @property
    def cap_variable(self) -> str:
        return cap_variable(self.platform, self.capability)

    @property
    def setting_name(self) -> str:
        """``platform_capability``: the pair's name in ``KAIRO_CAP_*`` and ``KAIRO_FEATURE_*``."""
        return f"{self.platform.value}_{self.capability.value}"


def cap_variable(platform: str, capability: str) -> str:
    """``KAIRO_CAP_<PLATFORM>_<CAPABILITY>``, e.g. ``KAIRO_CAP_INSTAGRAM_POSTS``."""
    return f"KAIRO_CAP_{platform.strip().upper()}_{capability.strip().upper()}"


def _check_cap(cap: int) -> int:
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"cap must be a positive integer, got {cap!r}")
    return cap


# --- Input builders ------------------------------------------------------------------------


def _instagram_posts_input(
    identifier: str, settings: Mapping[str, object], cap: int
) -> dict[str, object]:
    # Fix: the old entry put the bare username into directUrls, which expects a URL.
    return {
        "directUrls": [identifiers.instagram_profile_url(identifier)],
        "resultsType": "posts",
        "resultsLimit": _check_cap(cap),
        "addParentData": False,
    }


def _instagram_reels_input(
    identifier: str, settings: Mapping[str, object], cap: int
) -> dict[str, object]:
    return {
        "username": [identifiers.instagram_handle(identifier)],
        "resultsLimit": _check_cap(cap),
        "includeTranscript": True,
        "includeSharesCount": False,
        "includeDownloadedVideo": False,
        "skipPinnedPosts": True,
    }


def _linkedin_company_input(
    identifier: str, settings: Mapping[str, object], cap: int
) -> dict[str, object]:
    return {
        "company_name": identifiers.linkedin_company_slug(identifier),
        "limit": _check_cap(cap),
        "sort": "recent",
    }


def _linkedin_profile_input(
    identifier: str, settings: Mapping[str, object], cap: int
) -> dict[str, object]:
    return {
        "profile_url": identifiers.linkedin_profile_url(identifier),
        "limit": _check_cap(cap),
        "sort": "recent",
    }


def _tiktok_input(identifier: str, settings: Mapping[str, object], cap: int) -> dict[str, object]:
    # resultsPerPage defaults to 1 when omitted, so it is always sent.
    return {
        "profiles": [identifiers.tiktok_handle(identifier)],
        "resultsPerPage": _check_cap(cap),
        "profileSorting": "latest",
        "excludePinnedPosts": True,
        "profileScrapeSections": ["videos"],
    }


def _youtube_input(identifier: str, settings: Mapping[str, object], cap: int) -> dict[str, object]:
    return {
        "startUrls": [{"url": identifiers.youtube_channel_url(identifier)}],
        "maxResults": _check_cap(cap),
        "maxResultsShorts": 0,
        "maxResultStreams": 0,
    }


def web_start_urls(identifier: str, settings: Mapping[str, object]) -> list[str]:
    """The homepage, then up to two distinct ``settings["extra_start_urls"]``.

    Raises :class:`~kairo_ingest.errors.UsageError` when extra_start_urls is not a list of
    http(s) URLs.
    """
    homepage = identifiers.web_start_url(identifier)
    extra = settings.get("extra_start_urls")
    if extra is None:
        extra = []
    if not isinstance(extra, list) or not all(isinstance(url, str) for url in extra):
        raise errors.UsageError("settings.extra_start_urls must be a list of URLs")
    urls = [homepage]
    for raw in extra:
        url = identifiers.web_start_url(raw)
        if url not in urls:
            urls.append(url)
        if len(urls) == 1 + MAX_EXTRA_START_URLS:
            break
    return urls


def _web_input(identifier: str, settings: Mapping[str, object], cap: int) -> dict[str, object]:
    urls = web_start_urls(identifier, settings)
    return {
        "startUrls": [{"url": url} for url in urls],
        "maxCrawlDepth": 1,
        "maxCrawlPages": min(_check_cap(cap), len(urls)),
    }


def _spec(
    platform: statuses.Platform,
    capability: statuses.Capability,
    actor_id: str,
    content_type: ContentType,
    default_cap: int,
    build_input: InputBuilder,
    *,
    flagged: bool = False,
) -> ActorSpec:
    flag = f"KAIRO_FEATURE_{platform.value.upper()}_{capability.value.upper()}" if flagged else None
    return ActorSpec(platform, capability, actor_id, content_type, default_cap, flag, build_input)


_P = statuses.Platform
_C = statuses.Capability

SPECS: Mapping[tuple[statuses.Platform, statuses.Capability], ActorSpec] = {
    (spec.platform, spec.capability): spec
    for spec in (
        _spec(_P.INSTAGRAM, _C.POSTS, "apify~instagram-scraper", ContentType.POST, 8,
              _instagram_posts_input),
        _spec(_P.INSTAGRAM, _C.REELS, "apify~instagram-reel-scraper", ContentType.REEL, 6,
              _instagram_reels_input),
        _spec(_P.LINKEDIN, _C.COMPANY_POSTS, "apimaestro~linkedin-company-posts",
              ContentType.TEXT_POST, 6, _linkedin_company_input),
        _spec(_P.LINKEDIN, _C.PROFILE_POSTS, "apimaestro~linkedin-profile-posts",
              ContentType.TEXT_POST, 6, _linkedin_profile_input, flagged=True),
        _spec(_P.TIKTOK, _C.PROFILE_VIDEOS, "clockworks~tiktok-scraper",
              ContentType.SHORT_VIDEO, 6, _tiktok_input),
        _spec(_P.YOUTUBE, _C.CHANNEL_VIDEOS, "streamers~youtube-scraper", ContentType.VIDEO, 6,
              _youtube_input),
        _spec(_P.WEB, _C.CRAWL_PAGES, "apify~website-content-crawler", ContentType.WEB_PAGE, 3,
              _web_input),
    )
}  # fmt: skip


# --- Lookups -------------------------------------------------------------------------------


def valid_pairs() -> list[str]:
    """Every supported pair as ``platform.capability``, in registry order."""
    return [spec.key for spec in SPECS.values()]


def find_spec(platform: str, capability: str) -> ActorSpec | None:
    """The spec of a pair (case and surrounding spaces ignored), or None when unknown."""
    try:
        key = (
            statuses.Platform(platform.strip().lower()),
            statuses.Capability(capability.strip().lower()),
        )
    except ValueError:
        return None
    return SPECS.get(key)


def get_spec(platform: str, capability: str) -> ActorSpec:
    """The spec of a pair; raises :class:`~kairo_ingest.errors.UsageError` listing the
    valid pairs when the pair is unknown."""
    spec = find_spec(platform, capability)
    if spec is None:
        raise errors.UsageError(
            f"unknown platform/capability {platform}.{capability}; "
            f"valid pairs: {', '.join(valid_pairs())}"
        )
    return spec


def validate_source(
    platform: str, capability: str, identifier: str, settings: Mapping[str, object]
) -> str:
    """Check a source before it is stored and return its normalized identifier.

    Validates the pair, the identifier and the settings (by building the actor input once).
    Raises :class:`~kairo_ingest.errors.UsageError` with a one-line reason.
    """
    spec = get_spec(platform, capability)
    normalized = identifiers.normalize_identifier(spec.platform, spec.capability, identifier)
    if not isinstance(settings, Mapping):
        raise errors.UsageError("settings must be a JSON object")
    spec.build_input(normalized, settings, spec.default_cap)
    return normalized


# --- Caps and flags ------------------------------------------------------------------------


def pair_of_setting(name: str) -> str:
    """``platform.capability`` of a setting name such as ``linkedin_company_posts``."""
    for spec in SPECS.values():
        if spec.setting_name == name:
            return spec.key
    raise KeyError(name)


def cap_for(platform: str, capability: str, caps: Mapping[str, int]) -> int:
    """The result cap of a pair: ``caps["platform.capability"]`` (the validated
    ``KAIRO_CAP_*`` settings) when present, else the registry default; an unknown pair gets
    :data:`UNKNOWN_PAIR_CAP`."""
    spec = find_spec(platform, capability)
    if spec is None:
        return UNKNOWN_PAIR_CAP
    return caps.get(spec.key, spec.default_cap)


def parse_pairs(raw: str) -> frozenset[str]:
    """``"linkedin.company_posts, WEB.crawl_pages"`` as lower-case ``platform.capability``s."""
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def unknown_pairs(pairs: Iterable[str]) -> list[str]:
    """The pairs the registry does not know, sorted."""
    return sorted(set(pairs) - set(valid_pairs()))


def capability_enabled(
    platform: str, capability: str, features: Collection[str], disabled: Collection[str]
) -> tuple[bool, str]:
    """``(True, "")`` when the pair may run, else ``(False, reason)``.

    ``disabled`` holds ``platform.capability`` strings (from ``KAIRO_DISABLED_CAPABILITIES``);
    a pair with a feature flag also needs to be in ``features`` (the pairs whose
    ``KAIRO_FEATURE_...`` setting is on).
    """
    spec = find_spec(platform, capability)
    if spec is None:
        return False, f"unknown platform/capability {platform}.{capability}"
    if spec.key in {entry.strip().lower() for entry in disabled}:
        return False, f"capability {spec.key} is disabled by {DISABLED_CAPABILITIES_VARIABLE}"
    if spec.feature_flag is not None and spec.key not in features:
        return False, f"capability {spec.key} is off: set {spec.feature_flag}=1 to enable it"
    return True, ""
