"""Starting and stopping ``kairo-ingest console`` as a real process, for the e2e tests."""

from __future__ import annotations

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cli"))

import cli_kit  # noqa: E402


def start_console(
    url: str, *args: str, token: str | None = None, **env: str
) -> tuple[subprocess.Popen[str], str]:
    """Start ``kairo-ingest console`` on a free port; return it and its base URL."""
    port = cli_kit.free_port()
    values = {"KAIRO_DATABASE_URL": url, **env}
    if token is not None:
        values["KAIRO_CONSOLE_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "kairo_ingest", "console", "--port", str(port), *args],
        env=cli_kit.env(**values),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    cli_kit.wait_for(f"{base}/login", 200 if token else 303, proc=proc, within=60)
    return proc, base


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM, then its exit code, stdout and stderr (the pipes are closed)."""
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return proc.returncode, out, err
