"""Out of descriptors: the health server logs it once per interval and recovers."""

from __future__ import annotations

import errno
import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HARNESS = pathlib.Path(__file__).with_name("emfile_harness.py")
HALF_OPEN = 120  # bounded; loopback only
BOUND_SECONDS = 60.0

pytestmark = pytest.mark.slow  # a subprocess held out of descriptors for an interval


def _livez(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _seen(proc: subprocess.Popen[str]) -> int:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write("seen\n")
    proc.stdin.flush()
    word, count = proc.stdout.readline().split()
    assert word == "seen"
    return int(count)


def test_descriptor_exhaustion_is_logged_once_per_interval_and_the_server_recovers() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(HARNESS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    socks: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        word, port_text = proc.stdout.readline().split()
        assert word == "listening"
        port = int(port_text)
        # Half-open connections: connect and never send a request head.
        for _ in range(HALF_OPEN):
            sock = socket.socket()
            sock.setblocking(False)
            code = sock.connect_ex(("127.0.0.1", port))
            assert code in (0, errno.EINPROGRESS), code
            socks.append(sock)
        # Wait (bounded) until accept() has failed for want of descriptors three times:
        # asyncio retries accepting about once a second.
        deadline = time.monotonic() + BOUND_SECONDS
        seen = 0
        while seen < 3 and time.monotonic() < deadline:
            seen = _seen(proc)
            time.sleep(0.1)
        assert seen >= 3, f"accept never ran out of descriptors ({seen})"
        for sock in socks:
            sock.close()
        socks.clear()
        # Accepting resumes; the half-open ones are cut off; /livez answers again.
        deadline = time.monotonic() + BOUND_SECONDS
        while _livez(port) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _livez(port) == 200
        assert proc.poll() is None, "the server died"
    finally:
        for sock in socks:
            sock.close()
        try:  # communicate() closes stdin: the harness stops
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    exhausted = [r for r in records if r.get("event") == "out_of_file_descriptors"]
    assert len(exhausted) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(stderr) < 20_000, f"{len(stderr)} bytes of stderr"
