"""Who may see the console and act through it: bind rules, sessions and CSRF tokens.

* A console that listens on anything but a loopback address needs KAIRO_CONSOLE_TOKEN;
  :func:`check_bind` refuses to start otherwise (a ConfigError: exit 2).
* With a token, every request proves it knows it: ``Authorization: Bearer <token>``, or
  a session cookie the login form sets (HttpOnly, SameSite=Strict). The cookie holds an
  issue time and an HMAC of it keyed by the token, never the token; changing the token
  ends every session.
* Every POST carries a CSRF token: an HMAC, keyed by the console secret, of a random
  nonce kept in a second cookie (a signed double-submit). Requests that authenticate
  with a bearer header skip it: a browser never adds that header by itself.
* Without a token (loopback only) the Host header must name a loopback address, so a
  web page cannot reach the console through DNS rebinding.

Every comparison of a secret is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time

from kairo_ingest import errors

SESSION_COOKIE = "kairo_console_session"
CSRF_COOKIE = "kairo_console_csrf"
SESSION_MAX_AGE_SECONDS = 12 * 3600
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; anything else (0.0.0.0, ::, a name) is not."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token."""
    if token is None and not is_loopback(host):
        raise errors.ConfigError(
            f"the console would listen on {host}, which is not a loopback address: "
            "set KAIRO_CONSOLE_TOKEN (16+ characters) to guard it, or bind 127.0.0.1",
            variable="KAIRO_CONSOLE_TOKEN",
        )


def host_header_is_loopback(host_header: str | None) -> bool:
    if not host_header:
        return False
    name = host_header.strip()
    if name.startswith("["):  # [::1]:8080
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return is_loopback(name)


class Guard:
    """The console's secrets: its token (or none) and the key that signs CSRF tokens."""

    def __init__(self, token: str | None, *, now: float | None = None) -> None:
        self._token = token
        # Without a token there is no login; CSRF tokens are then signed with a key that
        # lives as long as this process.
        seed = token.encode() if token is not None else secrets.token_bytes(32)
        self._session_key = hmac.new(seed, b"kairo-console-session", hashlib.sha256).digest()
        self._csrf_key = hmac.new(seed, b"kairo-console-csrf", hashlib.sha256).digest()
        self._now = now

    @property
    def required(self) -> bool:
        return self._token is not None

    def _time(self) -> int:
        return int(self._now if self._now is not None else time.time())

    def token_matches(self, candidate: str) -> bool:
        if self._token is None:
            return False
        return hmac.compare_digest(candidate.encode(), self._token.encode())

    def bearer_ok(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    def new_session(self) -> str:
        issued = str(self._time())
        return f"{issued}.{self._sign(self._session_key, issued)}"

    def session_ok(self, cookie: str | None) -> bool:
        if not cookie or "." not in cookie:
            return False
        issued, _, signature = cookie.partition(".")
        if not hmac.compare_digest(
            signature.encode(), self._sign(self._session_key, issued).encode()
        ):
            return False
        try:
            age = self._time() - int(issued)
        except ValueError:
            return False
        return 0 <= age <= SESSION_MAX_AGE_SECONDS

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, nonce: str) -> str:
        return self._sign(self._csrf_key, nonce)

    def csrf_ok(self, nonce: str | None, submitted: str | None) -> bool:
        if not nonce or not submitted:
            return False
        return hmac.compare_digest(submitted.encode(), self.csrf_token(nonce).encode())

    @staticmethod
    def _sign(key: bytes, value: str) -> str:
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
