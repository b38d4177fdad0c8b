"""``kairo-ingest console`` and ``run`` with KAIRO_CONSOLE_PORT, as real processes."""

from __future__ import annotations

import http.cookiejar
import subprocess
import sys
import urllib.error
import urllib.request

import cli_kit
import console_seed
import pytest
from console_e2e_kit import read_login_url, start_console, stop

from kairo_ingest import token_strength


def _get(
    url: str, token: str | None = None, opener: urllib.request.OpenerDirector | None = None
) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_non_local_bind_without_a_token_refuses_to_start() -> None:
    done = cli_kit.cli(
        "console", "--host", "0.0.0.0", "--port", str(cli_kit.free_port()), environ=cli_kit.env()
    )
    assert done.returncode == 2, done.stderr
    assert "KAIRO_CONSOLE_TOKEN" in done.stderr
    assert "not a loopback address" in done.stderr


@pytest.mark.parametrize(
    "token", ["short", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "0123456789abcdef0123456789abcd"]
)
def test_a_console_token_under_128_bits_is_a_bad_setting(token: str) -> None:
    # A weak token exits at once; a console that starts instead runs until the bound.
    done = cli_kit.cli("console", environ=cli_kit.env(KAIRO_CONSOLE_TOKEN=token), timeout=20)
    assert done.returncode == 2
    assert "KAIRO_CONSOLE_TOKEN" in done.stderr
    assert "128 bits" in done.stderr


def test_without_a_token_the_console_prints_a_login_url_once(
    seeded: console_seed.Seeded,
) -> None:
    proc, base = start_console(seeded.url)
    try:
        login_url, lines = read_login_url(proc)
        assert lines[0] == f"console: {base}/"
        assert login_url.startswith(f"{base}/login?token=")
        token = login_url.split("token=", 1)[1]
        assert token_strength.bits(token) >= 256
        assert _get(f"{base}/jobs") == 401
        assert _get(f"{base}/jobs", token=token) == 200
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        assert _get(login_url, opener=browser) == 200  # 303, then the overview
        assert _get(f"{base}/jobs", opener=browser) == 200
    finally:
        code, out, err = stop(proc)
    assert code == 0
    assert (out + "\n".join(lines)).count(token) == 1  # printed once
    assert token not in err  # and never through the log


def test_a_non_local_console_answers_401_without_credentials(
    seeded: console_seed.Seeded,
) -> None:
    token = console_seed.CONSOLE_TOKEN
    proc, base = start_console(seeded.url, "--host", "0.0.0.0", token=token)
    try:
        for path in ("/", "/jobs", "/runs", "/brands", f"/jobs/{seeded.pending_job}"):
            assert _get(base + path) == 401, path
            assert _get(base + path, token=token) == 200, path
        # Wrong tokens spend this client's tries (5), then even the right one waits.
        for path in ("/", "/jobs"):
            assert _get(base + path, token="wrong-token-wrong-token") == 401, path
    finally:
        code, out, _err = stop(proc)
    assert code == 0
    assert "console: http://0.0.0.0:" in out
    assert token not in out


def test_run_serves_the_console_when_its_port_is_set(seeded: console_seed.Seeded) -> None:
    port = cli_kit.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kairo_ingest", "run"],
        env=cli_kit.env(
            KAIRO_DATABASE_URL=seeded.url,
            KAIRO_CONSOLE_PORT=str(port),
            KAIRO_HTTP_PORT=str(cli_kit.free_port()),
            KAIRO_APIFY_SIMULATOR="true",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        cli_kit.wait_for(f"http://127.0.0.1:{port}/login", 200, proc=proc, within=60)
        login_url, _lines = read_login_url(proc)
        token = login_url.split("token=", 1)[1]
        assert _get(f"http://127.0.0.1:{port}/jobs") == 401
        assert _get(f"http://127.0.0.1:{port}/jobs", token=token) == 200
    finally:
        code, _out, err = stop(proc)
    assert code == 0
    assert "console_started" in err
    assert token not in err


def test_the_demo_serves_the_console_and_prints_its_login_url(db_url: str) -> None:
    port = cli_kit.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kairo_ingest", "demo", "--console"],
        env=cli_kit.env(KAIRO_DATABASE_URL=db_url, KAIRO_CONSOLE_PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        login_url, lines = read_login_url(proc, within=120)
        assert f"console: http://127.0.0.1:{port}/" in lines
        assert any(line.startswith("Stored:") for line in lines)  # after the demo's summary
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/jobs") == 401
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        assert _get(login_url, opener=browser) == 200
        assert _get(f"{base}/jobs?status=succeeded", opener=browser) == 200
    finally:
        code, _out, err = stop(proc)
    assert code == 0
    assert login_url.split("token=", 1)[1] not in err
