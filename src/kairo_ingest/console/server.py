"""Serving the console: from ``kairo-ingest console`` on its own, inside ``run``, or after
``demo``.

Either way it is one more uvicorn server on the process's event loop (``webstack``),
with its own read-only pool and write path beside the engine it is given (never that
engine's pool). :func:`build` checks the bind first, so a non-loopback address without
``KAIRO_CONSOLE_TOKEN`` fails before anything listens. Without a token it makes one;
:attr:`ConsoleServer.login_url` is then the URL to show, once, on standard output.
"""

from __future__ import annotations

import asyncio
import dataclasses

from sqlalchemy.ext import asyncio as sa_async
from starlette import types

from kairo_ingest import config, httpguard, logs, webstack
from kairo_ingest.console import access, security, spend, views
from kairo_ingest.console import app as console_app

log = logs.get(__name__)

DEFAULT_PORT = 8081


class ConsoleApp:
    """The console's ASGI app and what it owns: its token and its two engines."""

    def __init__(
        self,
        asgi: types.ASGIApp,
        *,
        pages: views.Pages,
        token: str,
        generated_token: bool,
    ) -> None:
        self.asgi = asgi
        self.pages = pages
        self.token = token
        self.generated_token = generated_token

    async def __call__(self, scope: types.Scope, receive: types.Receive, send: types.Send) -> None:
        await self.asgi(scope, receive, send)

    async def aclose(self) -> None:
        await self.pages.cache.aclose()
        await self.pages.spend_cache.aclose()
        await self.pages.reads.dispose()
        await self.pages.writes.dispose()


def app(
    settings: config.Settings,
    engine: sa_async.AsyncEngine,
    *,
    reads: access.ReadPool | None = None,
    writes: access.WritePath | None = None,
) -> ConsoleApp:
    """The console on ``engine``'s database, with a pool and a write path of its own."""
    configured = settings.console_token.get_secret_value() if settings.console_token else None
    token = configured or security.generate_token()
    secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
    pages = views.Pages(
        reads or access.ReadPool.beside(engine),
        writes or access.WritePath.beside(engine),
        freshness_ttl=settings.freshness_ttl,
        disabled_capabilities=settings.disabled_capability_set,
        features=settings.enabled_features,
        default_limits=spend.DefaultLimits(
            settings.apify_account_max_concurrent_runs,
            settings.apify_account_max_memory_mbytes,
            settings.apify_account_daily_cap_usd,
        ),
    )
    guard = security.Guard(token, secret=security.server_secret(secret_key))
    asgi = console_app.build(
        console_app.Console(pages, guard), trusted_proxies=settings.console_trusted_proxies
    )
    return ConsoleApp(asgi, pages=pages, token=token, generated_token=configured is None)


@dataclasses.dataclass
class ConsoleServer:
    server: webstack.Server
    app: ConsoleApp
    url: str | None = None

    @property
    def login_url(self) -> str | None:
        """The one-time login URL when the token was made here (None otherwise)."""
        if self.url is None or not self.app.generated_token:
            return None
        return security.login_url(self.url, self.app.token)


def build(
    settings: config.Settings,
    engine: sa_async.AsyncEngine,
    *,
    host: str,
    port: int,
    limits: httpguard.Limits | None = None,
) -> ConsoleServer:
    token = settings.console_token.get_secret_value() if settings.console_token else None
    security.check_bind(host, token)
    console = app(settings, engine)
    # The health server's limits: inside ``run`` the console shares the worker's loop and
    # descriptors, so a flood of half-open connections must not starve the jobs.
    return ConsoleServer(webstack.server(console, host=host, port=port, limits=limits), console)


async def start(console: ConsoleServer) -> tuple[asyncio.Task[None], str]:
    """Start serving in a task; return it and the URL once the socket listens."""
    task, url = await webstack.start(
        console.server, name="the console", port_variable="KAIRO_CONSOLE_PORT"
    )
    console.url = url
    log.info("console_started", url=url)
    return task, url


async def stop(console: ConsoleServer, task: asyncio.Task[None]) -> None:
    await webstack.stop(console.server, task)
    await console.app.aclose()
