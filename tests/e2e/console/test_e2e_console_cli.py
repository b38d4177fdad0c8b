"""``kairo-ingest console`` and ``run`` with KAIRO_CONSOLE_PORT, as real processes."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

import cli_kit
import console_seed
from console_e2e_kit import start_console, stop


def _get(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
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


def test_a_short_console_token_is_a_bad_setting() -> None:
    done = cli_kit.cli("console", environ=cli_kit.env(KAIRO_CONSOLE_TOKEN="short"))
    assert done.returncode == 2
    assert "KAIRO_CONSOLE_TOKEN" in done.stderr


def test_a_non_local_console_answers_401_without_credentials(
    seeded: console_seed.Seeded,
) -> None:
    token = console_seed.CONSOLE_TOKEN
    proc, base = start_console(seeded.url, "--host", "0.0.0.0", token=token)
    try:
        for path in ("/", "/jobs", "/runs", "/brands", f"/jobs/{seeded.pending_job}"):
            assert _get(base + path) == 401, path
            assert _get(base + path, token="wrong-token-wrong-token") == 401, path
            assert _get(base + path, token=token) == 200, path
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
        body = cli_kit.wait_for(f"http://127.0.0.1:{port}/jobs", 200, proc=proc, within=60)
        assert str(seeded.demo_jobs[0]) in body
    finally:
        code, _out, err = stop(proc)
    assert code == 0
    assert "console_started" in err
