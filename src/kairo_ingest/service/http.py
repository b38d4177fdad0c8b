"""The health and metrics server: a bare ASGI app served by uvicorn.

* ``/livez``: 200 while the event loop is responsive (a ticker task measures its lag).
* ``/readyz``: 200 when the database answers, the schema is at head and the worker is
  not shutting down; otherwise 503 with a JSON reason.
* ``/metrics``: the Prometheus text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, metrics
from kairo_ingest.db import migrate

log = logs.get(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

LOOP_LAG_LIMIT_SECONDS = 5.0
DB_CHECK_TIMEOUT_SECONDS = 2.0


class Health:
    """What the probes report; the service flips ``draining`` on the first SIGTERM."""

    def __init__(self, engine: sa_async.AsyncEngine, *, tick_seconds: float = 0.5) -> None:
        self.engine = engine
        self.draining = False
        self._tick_seconds = tick_seconds
        self._last_tick = time.monotonic()
        self._head = migrate.head_revision()

    async def tick_forever(self) -> None:
        while True:
            self._last_tick = time.monotonic()
            await asyncio.sleep(self._tick_seconds)

    def live(self) -> tuple[bool, str]:
        lag = time.monotonic() - self._last_tick
        if lag > LOOP_LAG_LIMIT_SECONDS:
            return False, f"event loop stalled for {lag:.1f}s"
        return True, "ok"

    async def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "shutting down"
        try:
            async with asyncio.timeout(DB_CHECK_TIMEOUT_SECONDS):
                async with self.engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
                current = await migrate.current_revision(self.engine)
        except (TimeoutError, OSError, sa.exc.SQLAlchemyError, errors.DatabaseError) as exc:
            return False, f"database unavailable: {errors.describe(exc)}"
        if current != self._head:
            return False, f"schema at {current or 'nothing'}, expected {self._head}"
        return True, "ok"


def app(health: Health) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def _send(send: Send, status: int, body: bytes, content_type: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _json(send: Send, ok: bool, reason: str) -> None:
        body = json.dumps({"status": "ok" if ok else "unavailable", "reason": reason}).encode()
        await _send(send, 200 if ok else 503, body, "application/json")

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await _send(send, 405, b"method not allowed\n", "text/plain")
        elif path == "/livez":
            await _json(send, *health.live())
        elif path == "/readyz":
            await _json(send, *(await health.ready()))
        elif path == "/metrics":
            await _send(send, 200, metrics.render(), metrics.CONTENT_TYPE)
        else:
            await _send(send, 404, b"not found\n", "text/plain")

    return asgi


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def server(health: Health, *, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app(health),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    return _Server(config)


async def serve(srv: uvicorn.Server) -> None:
    """Run the server; uvicorn's ``sys.exit`` on a failed bind becomes an ordinary error."""
    try:
        await srv.serve()
    except SystemExit as exc:
        raise OSError(f"health server failed to start (exit {exc.code})") from None
