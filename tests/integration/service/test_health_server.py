"""The health server on its own thread: a stalled worker loop, and uvicorn's limits."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest

from kairo_ingest.service import health_server, http

DEAD_DB = "postgresql://postgres@127.0.0.1:1/none"  # /readyz is not under test here
BOUND_SECONDS = 30.0


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[http.Health, str]]:
    limits = getattr(request, "param", None) or health_server.Limits()
    health = http.Health(DEAD_DB, apify="simulator", lag_limit_seconds=0.5, tick_seconds=0.05)
    front = health_server.HealthServer(health, host="127.0.0.1", port=0, limits=limits)
    address = await asyncio.to_thread(front.start)
    ticker = asyncio.create_task(health.tick_forever())
    try:
        yield health, f"http://{address}"
    finally:
        ticker.cancel()
        await asyncio.to_thread(front.stop)


async def test_livez_reports_a_blocked_worker_loop_then_recovers(
    served: tuple[http.Health, str],
) -> None:
    _, base = served
    code, _ = await asyncio.to_thread(_get, f"{base}/livez")
    assert code == 200

    seen: list[tuple[int, str]] = []
    saw_503 = threading.Event()

    def poll_until_503() -> None:
        deadline = time.monotonic() + BOUND_SECONDS
        while time.monotonic() < deadline:
            code, body = _get(f"{base}/livez")
            if code == 503:
                seen.append((code, body))
                saw_503.set()
                return
            time.sleep(0.05)

    poller = threading.Thread(target=poll_until_503)
    poller.start()
    # Block this (the "worker's") loop on purpose until the poller has seen 503, bounded.
    blocked_until = time.monotonic() + BOUND_SECONDS
    while not saw_503.is_set() and time.monotonic() < blocked_until:
        time.sleep(0.05)
    poller.join()
    assert saw_503.is_set(), "/livez never answered 503 while the loop was blocked"
    body = json.loads(seen[0][1])
    assert body["status"] == "unavailable"
    assert "event loop stalled" in body["reason"]
    assert body["loop_lag_seconds"] > 0.5

    # The loop runs again: the ticker beats and /livez turns 200 (bounded polling).
    for _ in range(600):
        code, text = await asyncio.to_thread(_get, f"{base}/livez")
        if code == 200:
            break
        await asyncio.sleep(0.05)
    assert code == 200, text


def _closed_by_server(sock: socket.socket, within: float = BOUND_SECONDS) -> bool:
    """True once the server closed ``sock`` (EOF or reset), False if still open after it."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass  # an error response may come first; the close follows it
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@pytest.mark.parametrize("served", [health_server.Limits(head_timeout_seconds=0.3)], indirect=True)
async def test_a_trickled_request_head_is_cut_off(served: tuple[http.Health, str]) -> None:
    _, base = served
    port = int(base.rsplit(":", 1)[1])

    def slowloris() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            return _closed_by_server(sock)

    assert await asyncio.to_thread(slowloris)
    code, _ = await asyncio.to_thread(_get, f"{base}/livez")
    assert code == 200


async def test_the_head_timeout_is_rearmed_after_each_response() -> None:
    """The head timeout holds for every request of a connection, not only its first.

    The first request (``/readyz`` against a database that never answers) is still being
    served when the timer armed at the connection's opening fires; after its response,
    the next head is due within the timeout again. A connection that then trickles its
    next head is closed (uvicorn's own keep-alive timeout stops counting as soon as a
    byte of the head arrives)."""
    with socket.socket() as silent:  # a "database" that accepts and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        dsn = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/none"
        health = http.Health(dsn, apify="simulator", db_timeout_seconds=1.0)
        limits = health_server.Limits(head_timeout_seconds=0.3, keep_alive_seconds=60)
        front = health_server.HealthServer(health, host="127.0.0.1", port=0, limits=limits)
        port = int((await asyncio.to_thread(front.start)).rsplit(":", 1)[1])
        try:

            def slow_request_then_a_trickled_head() -> tuple[bytes, bool]:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
                    first = _one_response(sock)
                    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # no blank line
                    return first, _closed_by_server(sock, within=10.0)

            first, closed = await asyncio.to_thread(slow_request_then_a_trickled_head)
        finally:
            await asyncio.to_thread(front.stop)
    assert first.startswith(b"HTTP/1.1 503"), first[:100]
    assert closed, "a kept-alive connection trickling its next head stayed open"


def _one_response(sock: socket.socket) -> bytes:
    """Read exactly one response: its head, then its chunked body up to the last chunk."""
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"0\r\n\r\n")):
        chunk = sock.recv(65536)
        assert chunk, f"the server closed before the response ended: {data[:200]!r}"
        data += chunk
    assert b"transfer-encoding: chunked" in data.lower(), data[:200]
    return data


async def test_an_oversized_header_is_refused(served: tuple[http.Health, str]) -> None:
    _, base = served
    port = int(base.rsplit(":", 1)[1])

    def big_header() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                sock.sendall(b"a" * (1024 * 1024) + b"\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return b""
            try:
                return sock.recv(200)
            except ConnectionResetError:
                return b""

    answer = await asyncio.to_thread(big_header)
    assert not answer.startswith(b"HTTP/1.1 200"), answer


@pytest.mark.parametrize(
    "served",
    [health_server.Limits(max_connections=4, limit_concurrency=4, head_timeout_seconds=60)],
    indirect=True,
)
async def test_connections_beyond_the_cap_are_closed_at_once(
    served: tuple[http.Health, str],
) -> None:
    _, base = served
    port = int(base.rsplit(":", 1)[1])

    def open_idle(count: int) -> int:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
        try:
            # Idle connections are kept for 60 s; only those beyond the cap are closed.
            return sum(_closed_by_server(s, within=2.0) for s in socks[4:])
        finally:
            for s in socks:
                s.close()

    assert await asyncio.to_thread(open_idle, 8) == 4
