"""How many bits a secret token carries, as far as its text shows.

A token's strength is its length times log2 of the smallest usual alphabet that holds
every one of its characters: digits (10), hex (16), lowercase letters and digits (36),
letters and digits (62), base64url (64) or printable ASCII (95). A token that repeats a
shorter string, or whose distinct characters are fewer than a quarter of its length, is
patterned, not random, and counts 0. So ``secrets.token_urlsafe(16)`` (22 characters)
and ``openssl rand -hex 16`` (32) make 128 bits; ``aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa``
makes none.
"""

from __future__ import annotations

import math
import string

_ALPHABETS = (
    frozenset(string.digits),
    frozenset(string.hexdigits.lower()),
    frozenset(string.ascii_lowercase + string.digits),
    frozenset(string.ascii_letters + string.digits),
    frozenset(string.ascii_letters + string.digits + "-_"),
    frozenset(string.printable[:95]),
)


def _periodic(token: str) -> bool:
    """True when the token is a shorter string repeated (``abcabcab``)."""
    n = len(token)
    return any(token == (token[:p] * (n // p + 1))[:n] for p in range(1, n // 2 + 1))


def bits(token: str) -> float:
    if not token:
        return 0.0
    chars = frozenset(token)
    alphabet = next((a for a in _ALPHABETS if chars <= a), None)
    if alphabet is None:  # beyond printable ASCII: count it as printable ASCII, no more
        alphabet = _ALPHABETS[-1]
    if _periodic(token) or len(chars) * 4 < len(token):
        return 0.0
    return len(token) * math.log2(len(alphabet))
