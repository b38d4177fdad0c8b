"""Serving the console: from ``kairo-ingest console`` on its own, or inside ``run``.

Either way it is one more uvicorn server on the process's event loop, sharing the
engine it is given. :func:`build` checks the bind first, so a non-loopback address
without KAIRO_CONSOLE_TOKEN fails before anything listens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config, errors, httpguard, logs
from kairo_ingest.console import security, spend, views, web

log = logs.get(__name__)

DEFAULT_PORT = 8081


def app(settings: config.Settings, engine: sa_async.AsyncEngine) -> web.Console:
    token = settings.console_token.get_secret_value() if settings.console_token else None
    pages = views.Pages(
        engine,
        freshness_ttl=settings.freshness_ttl,
        disabled_capabilities=settings.disabled_capability_set,
        features=settings.enabled_features,
        default_limits=spend.DefaultLimits(
            settings.apify_account_max_concurrent_runs,
            settings.apify_account_max_memory_mbytes,
            settings.apify_account_daily_cap_usd,
        ),
    )
    return web.Console(pages, security.Guard(token))


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the process owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build(
    settings: config.Settings,
    engine: sa_async.AsyncEngine,
    *,
    host: str,
    port: int,
    limits: httpguard.Limits | None = None,
) -> uvicorn.Server:
    token = settings.console_token.get_secret_value() if settings.console_token else None
    security.check_bind(host, token)
    # The health server's limits: inside ``run`` the console shares the worker's loop and
    # descriptors, so a flood of half-open connections must not starve the jobs.
    cfg = httpguard.Config(
        app(settings, engine),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        server_header=False,
        **httpguard.uvicorn_settings(limits or httpguard.Limits()),
    )
    return _Server(cfg)


async def start(server: uvicorn.Server) -> tuple[asyncio.Task[None], str]:
    """Start serving in a task; return it and the URL once the socket listens."""
    task = asyncio.create_task(_serve(server), name="console-server")
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                raise errors.ConfigError(
                    f"the console cannot listen on {server.config.host}:{server.config.port} "
                    "(KAIRO_CONSOLE_HOST / KAIRO_CONSOLE_PORT): address in use or not available",
                    variable="KAIRO_CONSOLE_PORT",
                )
            await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    log.info("console_started", url=url)
    return task, url


async def stop(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, timeout=5)


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn exits on a failed bind
        raise OSError(f"console server failed to start (exit {exc.code})") from None
