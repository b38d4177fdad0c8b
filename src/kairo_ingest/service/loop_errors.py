"""An event-loop exception handler that does not flood the log when descriptors run out.

When a process hits its descriptor limit, asyncio's accept loop fails with EMFILE,
stops accepting for a second (``asyncio.constants.ACCEPT_RETRY_DELAY``) and tries
again, logging a full traceback every time; other failing callbacks do the same. Under
a flood of half-open connections that was 97 MB of tracebacks in 12 s. This
handler logs descriptor exhaustion once per interval, with how many occurrences it
held back, and hands every other error to the loop's default handler.

Each accept that fails schedules its own retry, so one burst leaves many timers behind.
When the server closes its socket before the last of them fires, that retry fails with
``ValueError`` on descriptor -1: the tail of the same episode, logged at debug level.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from typing import Any

from kairo_ingest import clock, logs

log = logs.get(__name__)

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
DEFAULT_INTERVAL_SECONDS = 30.0


class DescriptorExhaustionLog:
    """Install with :meth:`install` on each loop; one instance can serve several loops."""

    def __init__(
        self,
        *,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock_: clock.Clock = clock.SYSTEM,
    ) -> None:
        self.interval_seconds = interval_seconds
        self.seen = 0  # every occurrence, logged or not
        self._clock = clock_
        self._suppressed = 0
        self._last_logged: float | None = None
        self._lock = threading.Lock()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(self.handle)

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if _is_accept_retry_on_a_closed_socket(context):
            log.debug("accept_retry_after_close", what=str(context.get("message", "")))
            return
        if not (isinstance(exc, OSError) and exc.errno in OUT_OF_DESCRIPTORS):
            loop.default_exception_handler(context)
            return
        now = self._clock.monotonic()
        with self._lock:
            self.seen += 1
            due = self._last_logged is None or now - self._last_logged >= self.interval_seconds
            if not due:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last_logged = self._suppressed, 0, now
        log.error(
            "out_of_file_descriptors",
            what=str(context.get("message", "")),
            error=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
            suppressed_since_last=suppressed,
            next_log_in_seconds=self.interval_seconds,
            hint="raise the descriptor limit (ulimit -n) or lower KAIRO_CONCURRENCY",
        )


def _is_accept_retry_on_a_closed_socket(context: dict[str, Any]) -> bool:
    """True for asyncio's scheduled accept retry failing because its socket is closed."""
    if not isinstance(context.get("exception"), ValueError):
        return False
    callback = getattr(context.get("handle"), "_callback", None)
    if getattr(callback, "__name__", "") != "_start_serving":
        return False
    args = getattr(context.get("handle"), "_args", None) or ()
    return any(isinstance(arg, socket.socket) and arg.fileno() == -1 for arg in args)
