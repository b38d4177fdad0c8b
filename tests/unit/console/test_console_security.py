"""The console's gate, as pure functions: bind rules, sessions, CSRF tokens, ``?next=``,
the throttle and token strength."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pytest

from kairo_ingest import config, errors, token_strength
from kairo_ingest.console import security

TOKEN = "a-console-token-of-some-length"
OTHER = "another-console-token-entirely"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_binds_need_no_token(host: str) -> None:
    assert security.is_loopback(host)
    security.check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "console.example", ""])
def test_any_other_bind_needs_the_token(host: str) -> None:
    assert not security.is_loopback(host)
    with pytest.raises(errors.ConfigError) as caught:
        security.check_bind(host, None)
    assert caught.value.variable == "KAIRO_CONSOLE_TOKEN"
    security.check_bind(host, TOKEN)


def test_bearer_must_match_the_token_exactly() -> None:
    guard = security.Guard(TOKEN)
    assert guard.bearer_ok(f"Bearer {TOKEN}")
    assert guard.bearer_ok(f"bearer {TOKEN}")
    assert not guard.bearer_ok(f"Bearer {TOKEN}x")
    assert not guard.bearer_ok(f"Basic {TOKEN}")
    assert not guard.bearer_ok(None)
    assert not guard.bearer_ok("Bearer ")


def test_a_session_holds_no_token_and_expires() -> None:
    now = 1_800_000_000.0
    secret = b"s" * 32
    guard = security.Guard(TOKEN, secret=secret, now=lambda: now)
    cookie = guard.new_session()
    assert TOKEN not in cookie
    principal = guard.session(cookie)
    assert principal is not None
    assert principal.via == "session"
    assert principal.identity == security.identity(TOKEN)
    later = security.Guard(
        TOKEN, secret=secret, now=lambda: now + security.SESSION_MAX_AGE_SECONDS + 1
    )
    assert not later.session_ok(cookie)
    issued, session_id, signature = cookie.split(".")
    assert not guard.session_ok(f"{int(issued) + 1}.{session_id}.{signature}")  # forged time
    assert not guard.session_ok("ünïcode.ß.x")
    # Another token, or another server secret: every session ends.
    assert not security.Guard(OTHER, secret=secret, now=lambda: now).session_ok(cookie)
    assert not security.Guard(TOKEN, secret=b"t" * 32, now=lambda: now).session_ok(cookie)


def test_session_and_csrf_keys_need_the_server_secret() -> None:
    """A saved page and its cookies are no oracle: the token alone does not give the keys."""
    secret = security.server_secret(None)
    guard = security.Guard(TOKEN, secret=secret)
    cookie = guard.new_session()
    nonce = guard.new_nonce()
    csrf = guard.csrf_token(nonce)
    # What an attacker who guessed the right token (but not the secret) would compute.
    for guessed_secret in (b"", TOKEN.encode(), hashlib.sha256(TOKEN.encode()).digest()):
        attacker = security.Guard(TOKEN, secret=guessed_secret)
        assert attacker.csrf_token(nonce) != csrf
        assert not attacker.session_ok(cookie)
    # The keys are not HMAC(token, label), the old derivation.
    old_csrf_key = hmac.new(TOKEN.encode(), b"kairo-console-csrf", hashlib.sha256).digest()
    assert hmac.new(old_csrf_key, nonce.encode(), hashlib.sha256).hexdigest() != csrf
    # KAIRO_SECRET_KEY makes the secret stable across restarts; without it, each start differs.
    assert security.server_secret("k1,k0") == security.server_secret("k1")
    assert security.server_secret(None) != security.server_secret(None)


def test_csrf_token_is_bound_to_its_nonce_and_key() -> None:
    guard = security.Guard(TOKEN)
    nonce = guard.new_nonce()
    token = guard.csrf_token(nonce)
    assert guard.csrf_ok(nonce, token)
    assert not guard.csrf_ok(guard.new_nonce(), token)
    assert not guard.csrf_ok(nonce, None)
    assert not guard.csrf_ok(None, token)
    assert not guard.csrf_ok(nonce, "é" + token[1:])
    assert not security.Guard(TOKEN).csrf_ok(nonce, token)  # another process's secret


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/jobs?status=failed", "/jobs?status=failed"),
        ("/jobs/123", "/jobs/123"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: a=b", "/"),
        ("jobs", "/"),
    ],
)
def test_next_is_a_path_on_this_console(raw: str | None, expected: str) -> None:
    assert security.safe_next(raw) == expected


def test_the_throttle_allows_a_burst_then_one_try_per_refill() -> None:
    now = [0.0]
    throttle = security.Throttle(burst=3, refill_seconds=10.0, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.retry_after_seconds("a") == 0
        throttle.failed("a")
    assert throttle.retry_after_seconds("a") == pytest.approx(10.0)
    assert throttle.retry_after_seconds("b") == 0  # per client
    now[0] = 10.0
    assert throttle.retry_after_seconds("a") == 0
    throttle.failed("a")
    assert throttle.retry_after_seconds("a") > 0


def test_the_throttle_remembers_a_bounded_number_of_clients() -> None:
    throttle = security.Throttle(burst=1, max_clients=100, clock=lambda: 0.0)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._buckets) == 100


@pytest.mark.parametrize(
    ("token", "strong"),
    [
        (secrets.token_urlsafe(16), True),
        (secrets.token_hex(16), True),
        ("console-token-for-tests-0123456789", True),
        ("aaaaaaaaaaaaaaaa", False),
        ("a" * 64, False),
        ("abcdefgh" * 6, False),
        ("0123456789abcdef", False),  # 64 bits
        (secrets.token_hex(15), False),  # 120 bits
    ],
)
def test_token_strength(token: str, strong: bool) -> None:
    assert (token_strength.bits(token) >= config.CONSOLE_TOKEN_MIN_BITS) is strong


def test_console_settings_defaults_and_a_short_token() -> None:
    settings = config.load()
    assert settings.console_port is None  # off by default
    assert settings.console_host == "127.0.0.1"
    assert settings.console_token is None
    for weak in ("short", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", secrets.token_hex(15)):
        with pytest.raises(errors.ConfigError) as caught:
            config.load(console_token=weak)
        assert caught.value.variable == "KAIRO_CONSOLE_TOKEN"
        assert "128 bits" in caught.value.message
    assert config.load(console_port="").console_port is None
