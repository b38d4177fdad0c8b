"""Who may see the console and act through it: the credential, sessions, CSRF, throttling.

* **Always a credential.** The console's token is ``KAIRO_CONSOLE_TOKEN``, or, when that
  is unset, a random one made at start (256 bits) and shown once in a login URL
  (:func:`login_url`), as Jupyter does. A token must carry at least 128 bits
  (``config`` refuses a weaker one at start, exit 2). No request is let in for where it
  comes from: there is no "loopback Host" rule, so a reverse proxy on the same machine
  opens nothing. A non-loopback bind still needs an explicit ``KAIRO_CONSOLE_TOKEN``
  (:func:`check_bind`): a random token printed into a server's log is a leak.
* Every request proves it knows the token: ``Authorization: Bearer <token>``, or a
  session cookie the login sets (HttpOnly, SameSite=Strict) that holds an issue time, a
  random session id and an HMAC of both, never the token.
* **Keys from a server secret.** Session and CSRF keys are HMACs of the server secret
  (the first ``KAIRO_SECRET_KEY`` when set, else 32 random bytes per start) and, for
  sessions, of the token: a saved page and its cookies give nothing to test tokens
  against offline, and changing the token or the secret ends every session.
* Every cookie-authenticated POST carries a CSRF token: an HMAC of a random nonce kept in
  a second cookie (a signed double-submit). Bearer requests skip it: a browser never adds
  that header by itself.
* **Throttled guessing.** Every wrong token (login form, login URL or bearer header)
  spends one of a client's :data:`LOGIN_BURST` tries, which come back one per
  :data:`LOGIN_REFILL_SECONDS`; with none left the console answers 429 without looking
  at the token. The client is the socket's peer, or the X-Forwarded-For address when
  the peer is a trusted proxy (``KAIRO_CONSOLE_TRUSTED_PROXIES``).
* ``?next=`` after a login is followed only to a path on this console.

Every comparison of a secret is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import ipaddress
import secrets
import time
import urllib.parse
from collections.abc import Callable

from kairo_ingest import errors

SESSION_COOKIE = "kairo_console_session"
CSRF_COOKIE = "kairo_console_csrf"
SESSION_MAX_AGE_SECONDS = 12 * 3600
GENERATED_TOKEN_BYTES = 32
LOGIN_BURST = 5
LOGIN_REFILL_SECONDS = 12.0
THROTTLE_CLIENTS = 10_000  # the most clients remembered; the oldest is forgotten first
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
    """Refuse a non-loopback bind without an explicit token (a made-up one would be printed)."""
    if token is None and not is_loopback(host):
        raise errors.ConfigError(
            f"the console would listen on {host}, which is not a loopback address: "
            "set KAIRO_CONSOLE_TOKEN (at least 128 bits) to guard it, or bind 127.0.0.1",
            variable="KAIRO_CONSOLE_TOKEN",
        )


def generate_token() -> str:
    return secrets.token_urlsafe(GENERATED_TOKEN_BYTES)


def server_secret(secret_key: str | None) -> bytes:
    """The first of KAIRO_SECRET_KEY's keys, or 32 random bytes that live as long as we do."""
    if secret_key is not None:
        first = next((k.strip() for k in secret_key.split(",") if k.strip()), "")
        if first:
            return hashlib.sha256(b"kairo-console-secret:" + first.encode()).digest()
    return secrets.token_bytes(32)


def login_url(base_url: str, token: str) -> str:
    """The URL that logs a browser in once: it carries the token, so it is shown only once."""
    return f"{base_url.rstrip('/')}/login?{urllib.parse.urlencode({'token': token})}"


def identity(token: str) -> str:
    """Who acted, for the audit log: a short hash of the token (which holds 128+ bits, so
    its first 32 bits of SHA-256 say which token it was and nothing more)."""
    return "token:" + hashlib.sha256(b"kairo-console-identity:" + token.encode()).hexdigest()[:8]


def safe_next(raw: str | None) -> str:
    """A same-origin path to go to after a login, or ``/``.

    Only an absolute path on this console: no scheme, no host, no ``//`` or ``/\\`` (which
    browsers read as another host), no control characters.
    """
    if not raw or not raw.startswith("/") or raw.startswith(("//", "/\\")):
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c == "\\" for c in raw):
        return "/"
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme or parts.netloc:
        return "/"
    return raw


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the credential's identity and how it was shown."""

    identity: str
    via: str  # "bearer" or "session"
    session_id: str | None = None

    @property
    def bearer(self) -> bool:
        return self.via == "bearer"


class Guard:
    """The console's secrets: its token and the keys that sign sessions and CSRF tokens."""

    def __init__(
        self, token: str, *, secret: bytes | None = None, now: Callable[[], float] = time.time
    ) -> None:
        self._token = token
        secret = secret if secret is not None else server_secret(None)
        token_digest = hashlib.sha256(token.encode()).digest()
        self._session_key = hmac.new(
            secret, b"kairo-console-session\0" + token_digest, hashlib.sha256
        ).digest()
        self._csrf_key = hmac.new(secret, b"kairo-console-csrf", hashlib.sha256).digest()
        self._now = now
        self.identity = identity(token)

    def token_matches(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token.encode())

    @staticmethod
    def bearer_value(authorization: str | None) -> str | None:
        """The token an ``Authorization: Bearer`` header shows, or None without one."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def bearer_ok(self, authorization: str | None) -> bool:
        value = self.bearer_value(authorization)
        return value is not None and self.token_matches(value)

    def new_session(self) -> str:
        issued = str(int(self._now()))
        session_id = secrets.token_hex(6)
        body = f"{issued}.{session_id}"
        return f"{body}.{self._sign(self._session_key, body)}"

    def session(self, cookie: str | None) -> Principal | None:
        if not cookie or cookie.count(".") != 2:
            return None
        issued, session_id, signature = cookie.split(".")
        expected = self._sign(self._session_key, f"{issued}.{session_id}")
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        try:
            age = int(self._now()) - int(issued)
        except ValueError:
            return None
        if not 0 <= age <= SESSION_MAX_AGE_SECONDS:
            return None
        return Principal(self.identity, "session", session_id)

    def session_ok(self, cookie: str | None) -> bool:
        return self.session(cookie) is not None

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


class Throttle:
    """Tries per client for presenting a token: a bucket of ``burst`` that refills one try
    per ``refill_seconds``. Only wrong tokens spend a try."""

    def __init__(
        self,
        *,
        burst: int = LOGIN_BURST,
        refill_seconds: float = LOGIN_REFILL_SECONDS,
        max_clients: int = THROTTLE_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def _level(self, client: str) -> float:
        now = self._clock()
        tries, at = self._buckets.get(client, (float(self.burst), now))
        return min(float(self.burst), tries + (now - at) / self.refill_seconds)

    def retry_after_seconds(self, client: str) -> float:
        """0 when the client may try now, else how long until it may."""
        level = self._level(client)
        return 0.0 if level >= 1.0 else (1.0 - level) * self.refill_seconds

    def failed(self, client: str) -> None:
        level = max(0.0, self._level(client) - 1.0)
        self._buckets[client] = (level, self._clock())
        self._buckets.move_to_end(client)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
