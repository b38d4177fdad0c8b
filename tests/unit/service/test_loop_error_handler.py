"""The loop's exception handler: descriptor exhaustion once per interval, and the accept
retries a closed server leaves behind kept out of the log."""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

from kairo_ingest.service import loop_errors


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def _closed_server_retry(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    """Run asyncio's own accept retry on a listening socket closed before it fires, the way
    a server stopped within a second of EMFILE leaves it; return what reached the
    default handler."""
    reached: list[dict[str, Any]] = []
    loop.default_exception_handler = reached.append  # type: ignore[method-assign]
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    sock.close()
    start_serving = loop._start_serving  # type: ignore[attr-defined]
    loop.call_soon(start_serving, asyncio.Protocol, sock, None, None, 100)
    loop.run_until_complete(asyncio.sleep(0))
    return reached


def test_an_accept_retry_on_a_closed_socket_is_not_logged_as_a_traceback() -> None:
    loop = asyncio.new_event_loop()
    try:
        loop_errors.DescriptorExhaustionLog().install(loop)
        assert _closed_server_retry(loop) == []
    finally:
        loop.close()


def test_without_the_handler_that_retry_reaches_the_default_handler() -> None:
    # The case above is real: asyncio itself reports it.
    loop = asyncio.new_event_loop()
    try:
        reached = _closed_server_retry(loop)
    finally:
        loop.close()
    assert len(reached) == 1
    assert isinstance(reached[0]["exception"], ValueError)


def test_other_value_errors_still_reach_the_default_handler() -> None:
    loop = asyncio.new_event_loop()
    reached: list[dict[str, Any]] = []
    loop.default_exception_handler = reached.append  # type: ignore[method-assign]
    try:
        loop_errors.DescriptorExhaustionLog().install(loop)

        def broken() -> None:
            raise ValueError("not an accept retry")

        loop.call_soon(broken)
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert [str(c["exception"]) for c in reached] == ["not an accept retry"]


def test_exhaustion_is_counted_and_kept_from_the_default_handler() -> None:
    clock = _Clock()
    guard = loop_errors.DescriptorExhaustionLog(interval_seconds=30.0, clock_=clock)
    loop = asyncio.new_event_loop()
    reached: list[dict[str, Any]] = []
    loop.default_exception_handler = reached.append  # type: ignore[method-assign]
    context = {"message": "socket.accept() out of system resource"}
    try:
        for now in (0.0, 1.0, 31.0):
            clock.now = now
            guard.handle(loop, {**context, "exception": OSError(errno.EMFILE, "x")})
    finally:
        loop.close()
    assert guard.seen == 3
    assert reached == []
