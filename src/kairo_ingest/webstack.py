"""What our Starlette apps share: a request-body cap, fixed response headers, and a
uvicorn server under :mod:`kairo_ingest.httpguard`'s limits that leaves the process's
signals alone.

Starlette gives the routing, requests, responses and test client; this module adds
only what it does not have. The console (on the process's loop, :func:`start`) and the
health server (on a thread of its own, :mod:`kairo_ingest.service.health_server`) serve
through it. The Apify simulator is a package of its own and does not import this.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence

import uvicorn
from starlette import types

from kairo_ingest import errors, httpguard, logs

log = logs.get(__name__)

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0


class BodyLimit:
    """Refuse a request body over ``max_bytes`` with 413, before the app sees any of it.

    The body is read here (it is small by definition) and replayed to the app, so no
    handler can start on a body that turns out too large.
    """

    def __init__(self, app: types.ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: types.Scope, receive: types.Receive, send: types.Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            await _too_large(send)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await _too_large(send)
                return
            if not message.get("more_body"):
                break
        replayed = False

        async def replay() -> types.Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: types.Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": b"request body too large\n"})


class FixedHeaders:
    """Add the same headers to every response (CSP, nosniff, no-store, ...)."""

    def __init__(self, app: types.ASGIApp, *, headers: Sequence[tuple[str, str]]) -> None:
        self.app = app
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]

    async def __call__(self, scope: types.Scope, receive: types.Receive, send: types.Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: types.Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, with_headers)


class Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the process owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def config(
    app: types.ASGIApp, *, host: str, port: int, limits: httpguard.Limits | None = None
) -> httpguard.Config:
    """uvicorn's config for ``app`` with httpguard's limits, no access log, no lifespan,
    no ``Server`` header and no proxy-header handling of its own (an app that trusts a
    proxy says so itself)."""
    return httpguard.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
        timeout_graceful_shutdown=1,
        server_header=False,
        **httpguard.uvicorn_settings(limits or httpguard.Limits()),
    )


def server(
    app: types.ASGIApp, *, host: str, port: int, limits: httpguard.Limits | None = None
) -> Server:
    """A uvicorn server for ``app`` under :func:`config`."""
    return Server(config(app, host=host, port=port, limits=limits))


async def start(
    running: uvicorn.Server, *, name: str, port_variable: str
) -> tuple[asyncio.Task[None], str]:
    """Serve in a task on this loop; return it and the URL once the socket listens."""
    task = asyncio.create_task(_serve(running), name=name)
    async with asyncio.timeout(START_TIMEOUT_SECONDS):
        while not running.started:
            if task.done():
                raise errors.ConfigError(
                    f"{name} cannot listen on {running.config.host}:{running.config.port}: "
                    "address in use or not available",
                    variable=port_variable,
                )
            await asyncio.sleep(0.01)
    host, port = running.servers[0].sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return task, f"http://{shown}:{port}/"


async def stop(running: uvicorn.Server, task: asyncio.Task[None]) -> None:
    running.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, timeout=STOP_TIMEOUT_SECONDS)


async def _serve(running: uvicorn.Server) -> None:
    try:
        await running.serve()
    except SystemExit as exc:  # uvicorn exits on a failed bind
        raise OSError(f"server failed to start (exit {exc.code})") from None
