"""Starting and stopping ``kairo-ingest console`` as a real process, for the e2e tests."""

from __future__ import annotations

import pathlib
import queue
import re
import subprocess
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cli"))

import cli_kit  # noqa: E402

LOGIN_URL = re.compile(r"^console: log in at (\S+)$")


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
    cli_kit.wait_for(f"{base}/login", 200, proc=proc, within=60)
    return proc, base


def read_login_url(proc: subprocess.Popen[str], *, within: float = 30.0) -> tuple[str, list[str]]:
    """The login URL the console printed, and the lines of standard output up to it."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line.rstrip("\n"))
            if LOGIN_URL.match(line.rstrip("\n")):
                return
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if match := LOGIN_URL.match(line):
            return match.group(1), seen
    raise AssertionError(f"no login URL on standard output: {seen}")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM, then its exit code, stdout and stderr (the pipes are closed)."""
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return proc.returncode, out, err
