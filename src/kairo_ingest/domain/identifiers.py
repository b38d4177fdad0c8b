"""Source identifiers: the one normalization every stored identifier goes through.

A source connection is unique on (brand, platform, capability, normalized identifier), so
two spellings of the same account must normalize to the same string, and normalizing an
already normalized identifier must give it back unchanged.

What each (platform, capability) stores:

=========================  ================================================================
instagram.posts / .reels   the username, lowercased, without ``@`` (``acme``)
tiktok.profile_videos      the username, lowercased, without ``@`` (``acme``)
linkedin.company_posts     the company slug after ``/company/``, lowercased (``acme``)
linkedin.profile_posts     the profile URL ``https://www.linkedin.com/in/<slug lowercased>``
youtube.channel_videos     ``@handle`` lowercased, a ``UC...`` channel id as given, or the
                           URL ``.../channel/<ID>`` (ID kept as is), ``.../c/<name lowercased>``
                           or ``.../user/<name>``
web.crawl_pages            the URL with the query kept and the fragment dropped
=========================  ================================================================

Every URL has its scheme and host lowercased and its trailing slash dropped; social URLs
also lose their query and fragment. A missing scheme means ``https``. Anything that cannot
be an identifier raises :class:`~kairo_ingest.errors.UsageError` with a one-line reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib import parse

from kairo_ingest import errors
from kairo_ingest.domain import statuses

# Instagram paths that are never usernames (a post, a reel, a story, ...).
INSTAGRAM_RESERVED_PATHS = frozenset(
    {"p", "reel", "reels", "stories", "explore", "tv", "accounts", "direct"}
)

_INSTAGRAM_USERNAME = re.compile(r"[a-z0-9._]{1,30}")
_TIKTOK_USERNAME = re.compile(r"[a-z0-9._]{1,30}")
_SLUG = re.compile(r"[\w%.~-]{1,200}")
_YOUTUBE_HANDLE = re.compile(r"@[\w%.-]{1,100}")
_YOUTUBE_CHANNEL_ID = re.compile(r"UC[A-Za-z0-9_-]{22}")
_YOUTUBE_NAME = re.compile(r"[\w%.~-]{1,200}")
_PORT = re.compile(r"[0-9]{1,5}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _fail(platform: str, raw: str, why: str) -> errors.UsageError:
    shown = raw if len(raw) <= 120 else raw[:117] + "..."
    return errors.UsageError(f"invalid {platform} identifier {shown!r}: {why}")


def _valid_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        return len(host) > 2 and all(ch in "0123456789abcdef:." for ch in host[1:-1])
    labels = host.split(".")
    return all(label and all(ch.isalnum() or ch == "-" for ch in label) for label in labels)


def _split_netloc(netloc: str) -> tuple[str | None, str]:
    """``(host, port)``; host is None when the port (or an IPv6 bracket) is malformed."""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, rest = netloc[: end + 1], netloc[end + 1 :]
        if end < 0 or (rest and not (rest.startswith(":") and _PORT.fullmatch(rest[1:]))):
            return None, ""
        return host, rest[1:]
    host, sep, port = netloc.partition(":")
    if sep and not _PORT.fullmatch(port):
        return None, ""
    return host, port


def normalize_url(raw: str, *, keep_query: bool) -> str:
    """Normalize an http(s) URL: lowercase scheme and host, drop the trailing slash and the
    fragment, and drop the query unless ``keep_query``. A missing scheme means ``https``.

    Raises :class:`~kairo_ingest.errors.UsageError` when ``raw`` is not an http(s) URL
    (user info in the URL is refused too: credentials do not belong in a source).
    """
    text = raw.strip()
    if not text:
        raise errors.UsageError("the URL is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise errors.UsageError(f"the URL {text[:120]!r} contains whitespace or control characters")
    if not _SCHEME.match(text):
        text = "https://" + text.lstrip("/")
    try:
        parts = parse.urlsplit(text)
    except ValueError as exc:
        raise errors.UsageError(f"{text[:120]!r} is not a valid URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise errors.UsageError(f"{text[:120]!r} is not an http(s) URL")
    if "@" in parts.netloc:
        raise errors.UsageError(f"{text[:120]!r} holds user info; give the URL without it")
    host, port = _split_netloc(parts.netloc.lower())
    if host is None:
        raise errors.UsageError(f"{text[:120]!r} has an invalid host or port")
    if not _valid_host(host):
        raise errors.UsageError(f"{text[:120]!r} has no valid host")
    netloc = f"{host}:{port}" if port else host
    path = parts.path.rstrip("/")
    query = parts.query if keep_query else ""
    return parse.urlunsplit((scheme, netloc, path, query, ""))


def _host_is(url: str, domain: str) -> bool:
    host = parse.urlsplit(url).hostname or ""
    return host == domain or host.endswith("." + domain)


def _is_url(text: str, domain: str) -> bool:
    """True when ``text`` is a URL rather than a bare name (``acme.co`` is a valid username)."""
    if _SCHEME.match(text) or "/" in text:
        return True
    head = text.split("?", 1)[0].split("#", 1)[0].lower()
    if head.startswith("@"):
        return False
    return head == domain or head.endswith("." + domain)


def _path_segments(url: str) -> list[str]:
    return [segment for segment in parse.urlsplit(url).path.split("/") if segment]


def _social_url(platform: str, raw: str, domain: str) -> str:
    try:
        url = normalize_url(raw, keep_query=False)
    except errors.UsageError as exc:
        raise _fail(platform, raw, exc.message) from exc
    if not _host_is(url, domain):
        raise _fail(platform, raw, f"not a {domain} URL")
    return url


def _instagram(raw: str) -> str:
    if _is_url(raw, "instagram.com"):
        segments = _path_segments(_social_url("instagram", raw, "instagram.com"))
        if not segments:
            raise _fail("instagram", raw, "the URL has no username; use the profile URL")
        name = segments[0]
    else:
        name = raw.removeprefix("@")
    name = name.lower()
    if _is_url(name, "instagram.com"):
        raise _fail("instagram", raw, "a username cannot be an instagram.com host name")
    if name in INSTAGRAM_RESERVED_PATHS:
        raise _fail(
            "instagram",
            raw,
            f"/{name}/ is a post, reel or page path, not a username; "
            "give the profile URL or the username",
        )
    if not _INSTAGRAM_USERNAME.fullmatch(name):
        raise _fail("instagram", raw, "a username has 1-30 letters, digits, '.' or '_'")
    return name


def _tiktok(raw: str) -> str:
    if _is_url(raw, "tiktok.com"):
        segments = _path_segments(_social_url("tiktok", raw, "tiktok.com"))
        if not segments or not segments[0].startswith("@"):
            raise _fail("tiktok", raw, "not a profile URL (expected https://www.tiktok.com/@name)")
        name = segments[0][1:]
    else:
        name = raw.removeprefix("@")
    name = name.lower()
    if _is_url(name, "tiktok.com"):
        raise _fail("tiktok", raw, "a username cannot be a tiktok.com host name")
    if not _TIKTOK_USERNAME.fullmatch(name):
        raise _fail("tiktok", raw, "a username has 1-30 letters, digits, '.' or '_'")
    return name


def _linkedin_company(raw: str) -> str:
    if _is_url(raw, "linkedin.com"):
        segments = _path_segments(_social_url("linkedin", raw, "linkedin.com"))
        if len(segments) < 2 or segments[0].lower() != "company":
            raise _fail(
                "linkedin",
                raw,
                "not a company URL (expected https://www.linkedin.com/company/<slug>)",
            )
        slug = segments[1]
    else:
        slug = raw
    slug = slug.lower()
    if not _SLUG.fullmatch(slug) or _is_url(slug, "linkedin.com"):
        raise _fail("linkedin", raw, "a company slug has letters, digits and '-' only")
    return slug


_LINKEDIN = "https://www.linkedin.com"


def _linkedin_profile(raw: str) -> str:
    if _is_url(raw, "linkedin.com"):
        url = _social_url("linkedin", raw, "linkedin.com")
        segments = _path_segments(url)
        if len(segments) < 2 or segments[0].lower() != "in":
            raise _fail(
                "linkedin", raw, "not a profile URL (expected https://www.linkedin.com/in/<slug>)"
            )
        parts = parse.urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        slug = segments[1]
    else:
        base = _LINKEDIN
        slug = raw
    slug = slug.lower()
    if not _SLUG.fullmatch(slug) or (base == _LINKEDIN and _is_url(slug, "linkedin.com")):
        raise _fail("linkedin", raw, "a profile slug has letters, digits and '-' only")
    return f"{base}/in/{slug}"


def _youtube(raw: str) -> str:
    if not _is_url(raw, "youtube.com"):
        if _YOUTUBE_CHANNEL_ID.fullmatch(raw):
            return raw
        handle = "@" + raw.removeprefix("@").lower()
        if not _YOUTUBE_HANDLE.fullmatch(handle):
            raise _fail("youtube", raw, "not a @handle or a UC... channel id")
        return handle
    url = _social_url("youtube", raw, "youtube.com")
    parts = parse.urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    segments = _path_segments(url)
    if segments and segments[0].startswith("@"):
        handle = segments[0].lower()
        if _YOUTUBE_HANDLE.fullmatch(handle):
            return handle
    elif len(segments) >= 2 and _YOUTUBE_NAME.fullmatch(segments[1]):
        kind, name = segments[0], segments[1]
        if kind == "channel":
            return f"{base}/channel/{name}"
        if kind == "c":
            return f"{base}/c/{name.lower()}"
        if kind == "user":
            return f"{base}/user/{name}"
    raise _fail(
        "youtube",
        raw,
        "not a channel URL (expected /channel/<ID>, /@handle, /c/<name> or /user/<name>)",
    )


def _web(raw: str) -> str:
    try:
        return normalize_url(raw, keep_query=True)
    except errors.UsageError as exc:
        raise _fail("web", raw, exc.message) from exc


_NORMALIZERS: dict[tuple[str, str], Callable[[str], str]] = {
    (statuses.Platform.INSTAGRAM, statuses.Capability.POSTS): _instagram,
    (statuses.Platform.INSTAGRAM, statuses.Capability.REELS): _instagram,
    (statuses.Platform.LINKEDIN, statuses.Capability.COMPANY_POSTS): _linkedin_company,
    (statuses.Platform.LINKEDIN, statuses.Capability.PROFILE_POSTS): _linkedin_profile,
    (statuses.Platform.TIKTOK, statuses.Capability.PROFILE_VIDEOS): _tiktok,
    (statuses.Platform.YOUTUBE, statuses.Capability.CHANNEL_VIDEOS): _youtube,
    (statuses.Platform.WEB, statuses.Capability.CRAWL_PAGES): _web,
}


def normalize_identifier(platform: str, capability: str, raw: str) -> str:
    """Return the normalized identifier for a (platform, capability) source.

    Idempotent: ``normalize_identifier(p, c, normalize_identifier(p, c, x))`` equals
    ``normalize_identifier(p, c, x)``. Raises :class:`~kairo_ingest.errors.UsageError`
    for an empty or malformed identifier and for an unknown pair.
    """
    key = (platform.strip().lower(), capability.strip().lower())
    normalizer = _NORMALIZERS.get(key)
    if normalizer is None:
        pairs = ", ".join(f"{p}.{c}" for p, c in _NORMALIZERS)
        raise errors.UsageError(
            f"unknown platform/capability {platform}.{capability}; valid pairs: {pairs}"
        )
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise errors.UsageError(f"the {key[0]}.{key[1]} identifier is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise _fail(key[0], text, "it contains whitespace or control characters")
    return normalizer(text)


# --- What the actor inputs need, from a normalized (or legacy) identifier -----------------


def instagram_handle(identifier: str) -> str:
    """The Instagram username (``acme``) of an identifier."""
    return _instagram(_stripped("instagram", identifier))


def instagram_profile_url(identifier: str) -> str:
    """``https://www.instagram.com/<username>/``, the URL the posts scraper's directUrls expect."""
    return f"https://www.instagram.com/{instagram_handle(identifier)}/"


def tiktok_handle(identifier: str) -> str:
    """The TikTok username without ``@`` (``acme``)."""
    return _tiktok(_stripped("tiktok", identifier))


def linkedin_company_slug(identifier: str) -> str:
    """The company slug (``acme``) the company-posts actor takes as company_name."""
    return _linkedin_company(_stripped("linkedin", identifier))


def linkedin_profile_url(identifier: str) -> str:
    """The profile URL (``https://www.linkedin.com/in/<slug>``)."""
    return _linkedin_profile(_stripped("linkedin", identifier))


def youtube_channel_url(identifier: str) -> str:
    """A URL of the channel for the scraper's startUrls: handles and bare channel ids become
    ``https://www.youtube.com/@handle`` and ``https://www.youtube.com/channel/<ID>``."""
    normalized = _youtube(_stripped("youtube", identifier))
    if normalized.startswith("@"):
        return f"https://www.youtube.com/{normalized}"
    if _YOUTUBE_CHANNEL_ID.fullmatch(normalized):
        return f"https://www.youtube.com/channel/{normalized}"
    return normalized


def web_start_url(identifier: str) -> str:
    """The site URL the crawler starts from (the source's homepage)."""
    return _web(_stripped("web", identifier))


def _stripped(platform: str, identifier: str) -> str:
    text = identifier.strip()
    if not text:
        raise errors.UsageError(f"the {platform} identifier is empty")
    return text
