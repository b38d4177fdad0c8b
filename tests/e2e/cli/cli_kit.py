"""Running the real CLI as a subprocess, and waiting on its HTTP endpoints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

BASE_ENV_DROP = (
    "KAIRO_DATABASE_URL",
    "KAIRO_APIFY_TOKEN",
    "KAIRO_APIFY_BASE_URL",
    "KAIRO_APIFY_SIMULATOR",
)


def env(**values: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in BASE_ENV_DROP}
    out.update({"KAIRO_LOG_FORMAT": "json", "KAIRO_LOG_LEVEL": "INFO"})
    out.update(values)
    return out


def cli(
    *args: str, environ: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to its exit; still running after ``timeout`` s fails the test (an
    assertion: a command that should have exited did not)."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "kairo_ingest", *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"kairo-ingest {args[0] if args else ''}: still running after {timeout:g} s"
        ) from exc


def cli_json(*args: str, environ: dict[str, str]) -> Any:
    done = cli(*args, "--json", environ=environ)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(url: str, status: int, *, proc: subprocess.Popen[str], within: float) -> str:
    """Poll ``url`` until it answers ``status``; fail early if the process dies."""
    deadline = time.monotonic() + within
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited {proc.returncode}: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        try:
            code, body = get(url)
        except OSError as exc:
            last = str(exc)
        else:
            if code == status:
                return body
            last = f"{code} {body}"
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer {status} within {within}s: {last}")
