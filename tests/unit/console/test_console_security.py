"""The console's gate, as pure functions: bind rules, sessions, CSRF tokens."""

from __future__ import annotations

import pytest

from kairo_ingest import config, errors
from kairo_ingest.console import security

TOKEN = "a-console-token-of-some-length"


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


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("127.0.0.1:8081", True),
        ("localhost:8081", True),
        ("[::1]:8081", True),
        ("localhost", True),
        ("evil.example:8081", False),
        ("127.0.0.1.evil.example", False),
        (None, False),
    ],
)
def test_host_header_must_name_loopback(header: str | None, ok: bool) -> None:
    assert security.host_header_is_loopback(header) is ok


def test_bearer_must_match_the_token_exactly() -> None:
    guard = security.Guard(TOKEN)
    assert guard.bearer_ok(f"Bearer {TOKEN}")
    assert guard.bearer_ok(f"bearer {TOKEN}")
    assert not guard.bearer_ok(f"Bearer {TOKEN}x")
    assert not guard.bearer_ok(f"Basic {TOKEN}")
    assert not guard.bearer_ok(None)
    assert not security.Guard(None).bearer_ok("Bearer ")


def test_a_session_holds_no_token_and_expires() -> None:
    now = 1_800_000_000.0
    guard = security.Guard(TOKEN, now=now)
    cookie = guard.new_session()
    assert TOKEN not in cookie
    assert guard.session_ok(cookie)
    later = security.Guard(TOKEN, now=now + security.SESSION_MAX_AGE_SECONDS + 1)
    assert not later.session_ok(cookie)
    issued, _, signature = cookie.partition(".")
    assert not guard.session_ok(f"{int(issued) + 1}.{signature}")  # a forged issue time
    assert not security.Guard("another-console-token-entirely", now=now).session_ok(cookie)
    assert not guard.session_ok("ünïcode.ß")


def test_csrf_token_is_bound_to_its_nonce_and_key() -> None:
    guard = security.Guard(TOKEN)
    nonce = guard.new_nonce()
    token = guard.csrf_token(nonce)
    assert guard.csrf_ok(nonce, token)
    assert not guard.csrf_ok(guard.new_nonce(), token)
    assert not guard.csrf_ok(nonce, None)
    assert not guard.csrf_ok(None, token)
    assert not guard.csrf_ok(nonce, "é" + token[1:])
    assert not security.Guard(None).csrf_ok(nonce, token)  # another process's key


def test_console_settings_defaults_and_a_short_token() -> None:
    settings = config.load()
    assert settings.console_port is None  # off by default
    assert settings.console_host == "127.0.0.1"
    assert settings.console_token is None
    with pytest.raises(errors.ConfigError) as caught:
        config.load(console_token="short")
    assert caught.value.variable == "KAIRO_CONSOLE_TOKEN"
    assert config.load(console_port="").console_port is None
