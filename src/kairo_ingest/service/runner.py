"""``kairo-ingest run``: the database, Apify, the worker and the health server, wired up.

Signals: the first SIGTERM or SIGINT turns ``/readyz`` to 503 and asks the worker to
stop claiming and finish in-flight work within KAIRO_SHUTDOWN_GRACE_SECONDS; a second
one skips the grace period. Either way the process exits 0 once it has released what
it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid

import uvicorn

from kairo_ingest import config, errors, logs
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.service import apify_access, handlers, http, resources
from kairo_ingest.worker import runner as worker_runner

log = logs.get(__name__)


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def make_worker(
    settings: config.Settings,
    db: resources.Database,
    deps: deps_module.Deps,
    concurrency: int,
) -> worker_runner.Worker:
    return worker_runner.Worker(
        db.engine,
        handlers.table(deps),
        owner=owner_name(),
        concurrency=concurrency,
        lease_seconds=settings.lease_seconds,
        poll_interval_seconds=settings.poll_interval_seconds,
        listen=settings.listen_notify,
        dsn_for_listen=db.url,
        retry_base_seconds=settings.retry_base_seconds,
        retry_cap_seconds=settings.retry_cap_seconds,
        snooze_seconds=settings.snooze_seconds,
        reap_interval_seconds=settings.reap_interval_seconds,
        retention=settings.finished_job_retention,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
    )


async def run(settings: config.Settings, *, concurrency: int | None, drain: bool) -> int:
    slots = concurrency or settings.concurrency
    async with contextlib.AsyncExitStack() as stack:
        db = await stack.enter_async_context(resources.database(settings))
        apify = await stack.enter_async_context(apify_access.client(settings))
        worker = make_worker(
            settings, db, handlers.pipeline_deps(settings, db.engine, apify), slots
        )
        health = http.Health(db.probe_engine)
        server = http.server(health, host=settings.http_host, port=settings.http_port)

        def on_signal(signame: str) -> None:
            log.info("signal_received", signal=signame, draining=health.draining)
            health.draining = True
            worker.request_stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        stack.callback(loop.remove_signal_handler, signal.SIGINT)
        stack.callback(loop.remove_signal_handler, signal.SIGTERM)

        ticker = asyncio.create_task(health.tick_forever(), name="health-ticker")
        serving = asyncio.create_task(http.serve(server), name="http-server")
        address = await _listening(server, serving, settings)
        log.info(
            "service_started",
            http=address,
            database=db.display_url,
            embedded_database=db.embedded,
            apify=apify.base_url,
            concurrency=slots,
            drain=drain,
        )
        try:
            await worker.run(drain=drain)
        finally:
            health.draining = True
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, timeout=5)
            ticker.cancel()
        log.info("service_stopped")
    return 0


async def _listening(
    server: uvicorn.Server, serving: asyncio.Task[None], settings: config.Settings
) -> str:
    """Wait until the health server listens; a port in use is a clear error, not a hang."""
    async with asyncio.timeout(10):
        while not server.started:
            if serving.done():
                raise errors.ConfigError(
                    f"cannot listen on {settings.http_host}:{settings.http_port} "
                    "(KAIRO_HTTP_HOST / KAIRO_HTTP_PORT): address in use or not available",
                    variable="KAIRO_HTTP_PORT",
                )
            await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return f"{host}:{port}"
