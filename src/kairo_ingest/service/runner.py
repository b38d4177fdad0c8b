"""``kairo-ingest run``: the database, Apify, the worker and the health server, wired up.

Signals: the first SIGTERM or SIGINT turns ``/readyz`` to 503 and asks the worker to
stop claiming; its whole exit (in-flight work, then cancellation, release and final
writes) fits in KAIRO_SHUTDOWN_GRACE_SECONDS; a second one skips the grace period.
Either way the process exits 0 once it has released what it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator

from kairo_ingest import config, logs
from kairo_ingest.console import server as console_server
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import run_slots
from kairo_ingest.pipeline import budget as pipeline_budget
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.pipeline import ledger as pipeline_ledger
from kairo_ingest.service import apify_access, handlers, health_server, http, resources, telemetry
from kairo_ingest.worker import core as worker_core
from kairo_ingest.worker import listener as worker_listener
from kairo_ingest.worker import parameters

log = logs.get(__name__)


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# How long `run --drain` waits, once the queue is idle, for the run ledger to abort and
# record the runs no job wants any more: a forced abort ends within seconds, but an
# intent whose start's answer was lost is settled for 30 s from its send first.
LEDGER_SETTLE_SECONDS = 60.0


def make_ledger(settings: config.Settings, deps: deps_module.Deps) -> pipeline_ledger.Ledger:
    return pipeline_ledger.Ledger(deps, interval_seconds=settings.ledger_interval_seconds)


def make_worker(
    settings: config.Settings,
    db: resources.Database,
    deps: deps_module.Deps,
    concurrency: int,
    *,
    ledger: pipeline_ledger.Ledger | None = None,
) -> worker_core.Worker:
    worker_config = parameters.WorkerConfig.from_settings(
        settings, owner=owner_name(), concurrency=concurrency, dsn_for_listen=db.url
    )
    ledger = ledger or make_ledger(settings, deps)
    return worker_core.Worker(
        db.engine, handlers.table(deps), worker_config, loops=[("ledger", ledger.run)]
    )


@contextlib.asynccontextmanager
async def slot_listener(
    db: resources.Database,
    budget: pipeline_budget.Budget,
    ledger: pipeline_ledger.Ledger | None = None,
) -> AsyncIterator[None]:
    """LISTEN for granted run slots, and for the run ledger's wake-ups (``jobs cancel``),
    on one connection."""
    more = {pipeline_ledger.CHANNEL: ledger.on_notify} if ledger is not None else None
    listener = worker_listener.Listener(
        db_engine.plain_dsn(db.url), budget.on_notify, channel=run_slots.CHANNEL, more=more
    )
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop), name="run-slot-listener")
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)


async def run(settings: config.Settings, *, concurrency: int | None, drain: bool) -> int:
    slots = concurrency or settings.concurrency
    apify_access.require_token(settings)  # before anything is opened or written
    async with contextlib.AsyncExitStack() as stack:
        # Tracing first, so it is the last thing closed: the job spans of the shutdown's
        # final writes are sent too (off unless OTEL_EXPORTER_OTLP_ENDPOINT is set).
        await stack.enter_async_context(telemetry.traces())
        db = await stack.enter_async_context(resources.database(settings))
        apify = await stack.enter_async_context(apify_access.client(settings))
        deps = handlers.pipeline_deps(settings, db.engine, apify)
        if deps.tenants is not None:
            stack.push_async_callback(deps.tenants.aclose)  # the accounts' own clients
        ledger = make_ledger(settings, deps)
        if deps.budget is not None and settings.listen_notify:
            # Waiters for a run slot and the run ledger are woken by NOTIFY; polling is the
            # fallback.
            await stack.enter_async_context(slot_listener(db, deps.budget, ledger))
        worker = make_worker(settings, db, deps, slots, ledger=ledger)
        health = http.Health(
            db.url, apify=apify_access.label(settings), migrations=settings.migrations_dir
        )
        front = health_server.HealthServer(health, host=settings.http_host, port=settings.http_port)
        console = None
        if settings.console_port is not None:  # the operator console, off unless a port is set
            console = console_server.build(
                settings, db.engine, host=settings.console_host, port=settings.console_port
            )

        def on_signal(signame: str) -> None:
            log.info("signal_received", signal=signame, draining=health.draining)
            health.draining = True
            worker.request_stop()

        loop = asyncio.get_running_loop()
        # The worker's loop gets the same guard as the health server's: running out of
        # descriptors logs once per interval, not a traceback per failed callback.
        front.descriptor_log.install(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        stack.callback(loop.remove_signal_handler, signal.SIGINT)
        stack.callback(loop.remove_signal_handler, signal.SIGTERM)

        ticker = asyncio.create_task(health.tick_forever(), name="health-ticker")
        try:
            address = await asyncio.to_thread(front.start)
        except BaseException:
            ticker.cancel()
            raise
        console_url = None
        if console is not None:
            try:
                console_task, console_url = await console_server.start(console)
            except BaseException:
                await asyncio.to_thread(front.stop)
                ticker.cancel()
                raise
            stack.push_async_callback(console_server.stop, console, console_task)
            if console.login_url is not None:
                # Once, on standard output, never through the log (it carries the token).
                print(f"console: log in at {console.login_url}", flush=True)
        log.info(
            "service_started",
            http=address,
            database=db.display_url,
            embedded_database=db.embedded,
            apify=apify.base_url,
            console=console_url,
            concurrency=slots,
            drain=drain,
        )
        try:
            await worker.run(drain=drain)
            if drain:
                # The queue is idle: let the ledger abort and record the runs no job wants.
                left = await ledger.settle(LEDGER_SETTLE_SECONDS)
                if left:
                    log.warning("ledger_runs_left", runs=left)
            if worker.drain_report is not None:
                print(f"drained: {worker.drain_report.describe()}", flush=True)
        finally:
            health.draining = True
            await asyncio.to_thread(front.stop)
            ticker.cancel()
        log.info("service_stopped")
    return 0
