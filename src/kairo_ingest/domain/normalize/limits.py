"""Caps on the evidence's text fields, so a hostile item cannot bloat a row.

An actor may return a 5 MB caption. Evidence keeps at most :data:`MAX_TEXT_CHARS`
characters (20,000: several times the longest real caption, transcript excerpt or page
summary we have seen, and far below what makes a row slow to read) of each text field
in :data:`CAPPED_FIELDS`, and names the fields it cut in ``flags["truncated"]``. The
raw item keeps the whole text, so nothing is lost: a re-normalization with a larger cap
recovers it.

Ids and URLs are never truncated (that would change their identity); over their own
caps they are invalid instead (:mod:`kairo_ingest.domain.normalize.base`).
"""

from __future__ import annotations

import dataclasses

from kairo_ingest.domain.normalize import base

MAX_TEXT_CHARS = 20_000
CAPPED_FIELDS = ("title", "text_primary", "text_secondary", "author_ref")
TRUNCATED_FLAG = "truncated"


def truncate(item: base.NormalizedItem, max_chars: int = MAX_TEXT_CHARS) -> base.NormalizedItem:
    """``item`` with each capped text field cut to ``max_chars``, flagged; unchanged if none is."""

    def cap(name: str, value: str | None) -> str | None:
        if value is not None and len(value) > max_chars:
            cut.append(name)
            return value[:max_chars]
        return value

    cut: list[str] = []
    title = cap("title", item.title)
    text_primary = cap("text_primary", item.text_primary) or ""
    text_secondary = cap("text_secondary", item.text_secondary)
    author_ref = cap("author_ref", item.author_ref) or ""
    if not cut:
        return item
    return dataclasses.replace(
        item,
        title=title,
        text_primary=text_primary,
        text_secondary=text_secondary,
        author_ref=author_ref,
        flags={**item.flags, TRUNCATED_FLAG: cut},
    )
