"""Scrubbing secrets out of text before it reaches a log line, an error or the database.

The Apify token is registered here once at start-up; from then on :func:`redact`
replaces it wherever it appears, together with anything that looks like a bearer
credential or a ``token=`` query parameter.
"""

from __future__ import annotations

import re

MASK = "***"

_secrets: set[str] = set()
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(token=)[^&\s\"']+"),
    # The password of a database URL, whatever it contains (up to the last "@").
    re.compile(r"(?i)(postgres(?:ql)?(?:\+\w+)?://[^:@/\s]*:)[^\s]+(?=@)"),
    # The password of any other URL's userinfo (an Apify base URL behind a proxy, ...).
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:@/\s]*:)[^@/\s]+(?=@)"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"',}\s]+(\s+[^\"',}\s]+)?"),
)


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it. Short values are ignored."""
    if value and len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text
