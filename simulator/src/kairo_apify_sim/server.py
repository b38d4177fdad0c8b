"""Serving the simulator with uvicorn (httptools), alone or inside tests.

- :func:`serve`: the ``kairo-ingest simulator`` command; runs until SIGINT/SIGTERM, then
  returns normally.
- :func:`running`: ``async with running(cfg) as sim:`` serves on a free port in the
  current event loop (``sim.base_url``, ``sim.state``).
- :func:`running_in_thread`: the same on its own event loop in a background thread, for
  synchronous callers such as the official apify-client.

Sized for thousands of concurrent long-polls: a deep listen backlog, no concurrency limit,
and long keep-alive so a client's pooled connections stay usable between polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import structlog
import uvicorn

from kairo_apify_sim import app as sim_app
from kairo_apify_sim import config as sim_config
from kairo_apify_sim import faults
from kairo_apify_sim import state as sim_state

log = structlog.get_logger(__name__)

BACKLOG = 8192  # the kernel caps it at net.core.somaxconn
KEEP_ALIVE_SECONDS = 75  # longer than any client's keep-alive expiry
GRACEFUL_SHUTDOWN_SECONDS = 2


class _DropNoise(logging.Filter):
    """Hides uvicorn's error line for the connections the simulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return faults.DROP_SENTINEL not in record.getMessage()


_drop_noise = _DropNoise()


@dataclasses.dataclass(slots=True)
class RunningSimulator:
    """A served simulator: where it listens and its live state."""

    base_url: str
    state: sim_state.SimState

    @property
    def config(self) -> sim_config.SimConfig:
        return self.state.config

    def stats(self) -> dict[str, Any]:
        return self.state.stats()


class _Server(uvicorn.Server):
    """uvicorn's server with a readiness event and a prompt stop; signals are left to whoever
    runs it.

    uvicorn polls ``should_exit`` every 0.1 s and then waits a fixed 0.1 s for connections
    to close; a test that starts a simulator paid both at every exit. :meth:`stop` wakes the
    loop at once, and a shutdown with no connection or task left to drain skips the wait.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._stopping.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        """uvicorn's loop (a tick every 0.1 s keeps the Date header fresh), woken by stop."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.1)
            should_exit = await self.on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets=sockets)
            return
        for listener in self.servers:
            listener.close()
        for sock in sockets or []:
            sock.close()
        for listener in self.servers:
            await listener.wait_closed()
        await self.lifespan.shutdown()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(application: sim_app.SimulatorApp, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        application,
        host=host,
        port=port,
        http="httptools",
        ws="none",
        lifespan="off",
        interface="asgi3",
        backlog=BACKLOG,
        limit_concurrency=None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        access_log=False,
        log_config=None,
        log_level="warning",
        server_header=False,
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket created as IPPROTO_TCP, with TCP_NODELAY.

    asyncio turns Nagle off only on accepted sockets whose ``proto`` is IPPROTO_TCP, which a
    socket made with the default proto (0) is not. With Nagle on, each response (headers and
    body written apart) stalled for the client's 40 ms delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _as_config(cfg: sim_config.SimConfig | Mapping[str, Any] | None) -> sim_config.SimConfig:
    if isinstance(cfg, sim_config.SimConfig):
        return cfg
    built = sim_config.SimConfig()
    if cfg:
        built.apply(cfg)
    return built


async def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    config: sim_config.SimConfig | Mapping[str, Any] | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully and return.

    ``on_ready(base_url)`` is called once the simulator listens (``port=0`` picks one).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    try:
        async with running(config, host=host, port=port) as sim:
            log.info("simulator.listening", base_url=sim.base_url)
            if on_ready is not None:
                on_ready(sim.base_url)
            await stop.wait()
            log.info("simulator.stopping", stats=sim.stats())
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def running(
    config: sim_config.SimConfig | Mapping[str, Any] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator in this event loop for the duration of the block."""
    state = sim_state.SimState(_as_config(config))
    sock = _bind(host, port)
    base_url = _url(host, sock.getsockname()[1])
    server = _Server(_uvicorn_config(sim_app.SimulatorApp(state), host, sock.getsockname()[1]))
    logging.getLogger("uvicorn.error").addFilter(_drop_noise)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="kairo-simulator")
    try:
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task.done():
            task.result()
            raise RuntimeError("the simulator stopped while starting")
        yield RunningSimulator(base_url=base_url, state=state)
    finally:
        state.wake_all()
        server.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        logging.getLogger("uvicorn.error").removeFilter(_drop_noise)
        sock.close()


@contextlib.contextmanager
def running_in_thread(
    config: sim_config.SimConfig | Mapping[str, Any] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[RunningSimulator]:
    """:func:`running` on its own event loop in a daemon thread, for synchronous callers.

    The state belongs to that loop: read counters from here, but change the configuration
    through ``POST /_sim/config``.
    """
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["loop"] = asyncio.get_running_loop()
        holder["stop"] = stop
        try:
            async with running(config, host=host, port=port) as sim:
                holder["sim"] = sim
                started.set()
                await stop.wait()
        except BaseException as exc:
            holder["error"] = exc
            raise
        finally:
            started.set()

    thread = threading.Thread(
        target=asyncio.run, args=(main(),), name="kairo-simulator", daemon=True
    )
    thread.start()
    started.wait()
    if "sim" not in holder:
        thread.join()
        raise RuntimeError("the simulator did not start") from holder.get("error")
    try:
        yield holder["sim"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join()
