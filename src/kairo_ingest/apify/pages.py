"""One dataset page: its items, even when some of them cannot be decoded.

The real API stores JSON objects only, but proxies, truncation and bugs happen, and one
bad item must never throw away its page (nor, after every retry, its source). So:

- a page that decodes is returned whole; items that are not objects are kept as they are
  (the pipeline stores them raw with a skip reason);
- a page that does not decode as a whole (an undecodable byte, JSON nested deeper than
  the decoder recurses, one malformed item) is split into item texts by
  :func:`split_array`, a small scanner that tracks strings, escapes and depth, and each
  item is decoded alone; an item that still fails becomes an
  :class:`~kairo_ingest.apify.models.UnparsableItem`;
- a body that is not one complete JSON array (an HTML error page, a truncated answer) is
  a transient error: asking again usually helps.
"""

from __future__ import annotations

import json
from typing import Any

from kairo_ingest import errors
from kairo_ingest.apify import models

_WHITESPACE = b" \t\r\n"
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


def split_array(content: bytes) -> list[bytes] | None:
    """The texts of the items of a top-level JSON array, or None if it is not one.

    Works on bytes: the structural characters are ASCII and never occur inside a
    multi-byte UTF-8 sequence, so an undecodable byte cannot mislead it.
    """
    text = content.strip(_WHITESPACE)
    if len(text) < 2 or text[0] != ord("[") or text[-1] != ord("]"):
        return None
    items: list[bytes] = []
    depth = 0
    in_string = escaped = False
    start = 1
    for position in range(1, len(text) - 1):
        byte = text[position]
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in _OPEN:
            depth += 1
        elif byte in _CLOSE:
            depth -= 1
            if depth < 0:
                return None
        elif byte == 0x2C and depth == 0:  # a comma between items
            items.append(text[start:position])
            start = position + 1
    if in_string or depth != 0:
        return None
    last = text[start:-1]
    if last.strip(_WHITESPACE) or items:
        items.append(last)
    return [item.strip(_WHITESPACE) for item in items]


def excerpt(raw: bytes) -> str:
    """At most ``EXCERPT_CHARS`` printable characters of ``raw``."""
    text = raw[: models.EXCERPT_CHARS * 4].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[: models.EXCERPT_CHARS]


def decode_item(raw: bytes) -> Any:
    """One item's JSON value, or an :class:`~kairo_ingest.apify.models.UnparsableItem`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return models.UnparsableItem("undecodable", excerpt(raw))
    try:
        return json.loads(text)
    except RecursionError:
        return models.UnparsableItem("too_deep", excerpt(raw))
    except ValueError:
        return models.UnparsableItem("invalid_json", excerpt(raw))


def decode_page(content: bytes, *, operation: str, status_code: int) -> list[Any]:
    """The items of a page body; see the module's docstring for what is kept."""
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        parts = split_array(content)
        if parts is None:
            raise errors.ApifyTransientError(
                f"{operation}: page is not a complete JSON array", status_code=status_code
            ) from None
        return [decode_item(part) for part in parts]
    if not isinstance(body, list):
        raise errors.ApifyTransientError(
            f"{operation}: page is not a JSON array", status_code=status_code
        )
    return body
