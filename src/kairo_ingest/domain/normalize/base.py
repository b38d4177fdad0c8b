"""The normalized item, the typed skip, and the field readers every platform shares.

How a raw field is read, so that no item, however malformed, raises:

- **Identity fields** (ids and URLs) and the **primary text** are strict. Missing or null
  means missing (``missing_id`` / ``missing_url``; an empty text). A value of the wrong type
  (a dict where a caption belongs, a float id, a URL that is not http(s)) raises
  :class:`InvalidField`, which :func:`kairo_ingest.domain.normalize.normalize` turns into
  ``Skip("invalid_field:<name>")``.
- **Everything else** (author, title, secondary text, dates, counts, media, flags,
  hashtags) is lenient: a wrong type reads as unknown.
- **Counts**: a non-negative integer (or an integral float, or a digit string such as
  ``"1,710,167,563"``) is kept, including a real 0. -1, null, a missing key or anything else
  is *unknown* and the metric key is **omitted**: ``metrics`` only holds known values.
- **Text** loses NUL characters and lone surrogates, which PostgreSQL cannot store.
- Optional strings are None, never ``""``, so an update can keep the old value with
  ``COALESCE(excluded.x, old.x)``.
- **Length**: an id longer than :data:`MAX_ID_CHARS` or a URL longer than
  :data:`MAX_URL_CHARS` is not an id or a URL (``invalid_field:<name>``): both are keys of a
  unique index, and PostgreSQL refuses an index row over ~2.7 kB. Long texts are truncated
  instead (:mod:`kairo_ingest.domain.normalize.limits`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping

from kairo_ingest.domain import registry, statuses

ERROR_ITEM = "error_item"
MISSING_ID = "missing_id"
MISSING_URL = "missing_url"
INVALID_FIELD_PREFIX = "invalid_field:"

MAX_COUNT = 2**63 - 1  # bigint; a larger "count" is garbage and reads as unknown
_MAX_ID_INT = 10**30  # ids are at most ~20 digits; a larger int is not an id
MAX_ID_CHARS = 512
MAX_URL_CHARS = 2048

JsonScalar = str | int | float | bool
FlagValue = JsonScalar | list[str]

_HASHTAG = re.compile(r"(?<![\w&#/])#(\w+)")
_COUNT_TEXT = re.compile(r"[0-9]{1,3}(?:[,_ ][0-9]{3})+|[0-9]{1,19}")


class InvalidField(Exception):
    """A field has a type that cannot be read; the item is skipped as ``invalid_field:<name>``."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


@dataclasses.dataclass(frozen=True, slots=True)
class Skip:
    """A raw item that does not become evidence, and why.

    ``reason`` is one of ``error_item``, ``missing_id``, ``missing_url`` or
    ``invalid_field:<name>``; it is stored as ``raw_apify_items.skip_reason``.
    """

    reason: str


def invalid_field(name: str) -> Skip:
    return Skip(INVALID_FIELD_PREFIX + name)


@dataclasses.dataclass(frozen=True, slots=True)
class NormalizedItem:
    """One evidence item, without brand and provenance (the pipeline adds those).

    ``published_at`` is aware UTC or None. ``metrics`` holds only known counts (non-negative
    ints); ``media`` and ``flags`` hold JSON scalars, and omit what is unknown; the one list
    is ``flags["truncated"]``, the text fields cut to their cap (see ``limits``).
    """

    platform: statuses.Platform
    content_type: registry.ContentType
    external_id: str | None
    canonical_url: str
    published_at: dt.datetime | None
    author_ref: str
    title: str | None
    text_primary: str
    text_secondary: str | None
    hashtags: tuple[str, ...]
    metrics: dict[str, int]
    media: dict[str, JsonScalar]
    flags: Mapping[str, FlagValue]

    @property
    def dedupe_key(self) -> tuple[str, str, str]:
        """The database's uniqueness rule within a brand: ``(platform, content_type,
        external_id)``, or ``canonical_url`` instead of the id for web items.

        Deduplicate a batch on it before one ``INSERT ... ON CONFLICT DO UPDATE``: a statement
        may not touch the same row twice.
        """
        if self.platform == statuses.Platform.WEB or self.external_id is None:
            return (self.platform.value, self.content_type.value, self.canonical_url)
        return (self.platform.value, self.content_type.value, self.external_id)

    def as_record(self) -> dict[str, object]:
        """The item's columns as a dict (enums as strings, hashtags as a list)."""
        return {
            "platform": self.platform.value,
            "content_type": self.content_type.value,
            "external_id": self.external_id,
            "canonical_url": self.canonical_url,
            "published_at": self.published_at,
            "author_ref": self.author_ref,
            "title": self.title,
            "text_primary": self.text_primary,
            "text_secondary": self.text_secondary,
            "hashtags": list(self.hashtags),
            "metrics": dict(self.metrics),
            "media": dict(self.media),
            "flags": dict(self.flags),
        }


# --- Items and paths -----------------------------------------------------------------------


def is_error_item(raw: Mapping[str, object]) -> bool:
    """True for the error items actors push into SUCCEEDED datasets: ``error``,
    ``errorDescription`` or ``noResults`` with a value."""
    error = raw.get("error")
    description = raw.get("errorDescription")
    no_results = raw.get("noResults")
    return (
        (error is not None and error is not False and error != "")
        or (description is not None and description != "")
        or (no_results is not None and no_results is not False)
    )


def get(raw: object, *path: str) -> object:
    """``raw[path[0]][path[1]]...``, or None when a step is missing or not an object."""
    current = raw
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def mapping(value: object) -> Mapping[str, object]:
    """``value`` when it is an object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


# --- Strict readers (raise InvalidField) ---------------------------------------------------


def clean(text: str) -> str:
    """Drop NUL characters and replace lone surrogates: PostgreSQL can store neither."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def identifier(value: object, name: str) -> str | None:
    """An id kept as a string (ints become strings). None when missing or blank."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_ID_CHARS:
            raise InvalidField(name)
        return clean(value).strip() or None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < _MAX_ID_INT:
        return str(value)
    raise InvalidField(name)


def text(value: object, name: str) -> str | None:
    """A text field: strings (stripped), numbers as strings; None when missing or blank."""
    if value is None:
        return None
    if isinstance(value, str):
        return clean(value).strip() or None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < _MAX_ID_INT:
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise InvalidField(name)


def url(value: object, name: str) -> str | None:
    """An absolute http(s) URL; None when missing or blank."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidField(name)
    if len(value) > MAX_URL_CHARS:
        raise InvalidField(name)
    candidate = clean(value).strip()
    if not candidate:
        return None
    if not is_http_url(candidate):
        raise InvalidField(name)
    return candidate


_HTTP_URL = re.compile(r"https?://[^/?#\s]\S*", re.IGNORECASE)


def is_http_url(candidate: str) -> bool:
    """True for ``http://host...`` or ``https://host...`` without whitespace."""
    return _HTTP_URL.fullmatch(candidate) is not None


# --- Lenient readers (wrong type reads as unknown) -----------------------------------------


def soft_text(value: object) -> str | None:
    try:
        return text(value, "")
    except InvalidField:
        return None


def soft_identifier(value: object) -> str | None:
    try:
        return identifier(value, "")
    except InvalidField:
        return None


def soft_url(value: object) -> str | None:
    try:
        return url(value, "")
    except InvalidField:
        return None


def count(value: object) -> int | None:
    """A known count, or None for unknown (-1, null, missing, wrong type, garbage)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_COUNT else None
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and 0 <= value <= MAX_COUNT:
            return int(value)
        return None
    if isinstance(value, str) and _COUNT_TEXT.fullmatch(value.strip()):
        number = int(re.sub(r"[,_ ]", "", value.strip()))
        return number if number <= MAX_COUNT else None
    return None


def number(value: object) -> int | float | None:
    """A finite, non-negative number (a duration, a size); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_COUNT else None
    if isinstance(value, float) and math.isfinite(value) and 0 <= value <= MAX_COUNT:
        return value
    return None


def boolean(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def put(target: dict[str, JsonScalar], key: str, value: JsonScalar | None) -> None:
    """Set ``target[key]`` unless the value is unknown (None)."""
    if value is not None:
        target[key] = value


def put_count(target: dict[str, int], key: str, value: object) -> None:
    known = count(value)
    if known is not None:
        target[key] = known


# --- Hashtags ------------------------------------------------------------------------------


def _unique_tags(tags: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for tag in tags:
        cleaned = clean(tag).strip().lstrip("#").strip().lower()
        if cleaned and not any(ch.isspace() for ch in cleaned):
            seen.setdefault(cleaned, None)
    return tuple(seen)


def hashtags_from_text(value: str) -> tuple[str, ...]:
    """``#tags`` in a text, lowercased and unique, in order; all-digit tags are not tags."""
    return _unique_tags(tag for tag in _HASHTAG.findall(value) if not tag.isdigit())


def hashtags_from_list(value: object, key: str | None = None) -> tuple[str, ...] | None:
    """Tags from a list of strings (or of objects with ``key``), lowercased and unique;
    None when ``value`` is not a list."""
    if not isinstance(value, list):
        return None
    tags: list[str] = []
    for entry in value:
        if isinstance(entry, Mapping) and key is not None:
            entry = entry.get(key)
        if isinstance(entry, str):
            tags.append(entry)
    return _unique_tags(tags)
