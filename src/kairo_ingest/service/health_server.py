"""The health server: uvicorn with limits, on its own thread and event loop.

Why a thread: ``/livez`` must answer while the worker's loop is blocked (a long CPU
step, a stuck callback), and report that block. Served on the worker's loop it could
only answer once the block was over. The thread runs its own loop with uvicorn, the
readiness probe's connection and a descriptor-exhaustion log guard.

Limits (uvicorn 0.29+ offers the first four; the last two are ours):

* ``limit_concurrency``: beyond it uvicorn answers 503 at once;
* ``h11_max_incomplete_event_size``: a request head over 16 KiB is refused (a 16 MB
  header was accepted before);
* ``timeout_keep_alive``: an idle kept-alive connection is closed after 5 s;
* ``backlog``: the kernel's accept queue for the port;
* a request-head timeout: uvicorn has no header read timeout, so a connection that
  has not sent a complete request head within 5 s of opening (or of its previous
  response) is closed, whatever it trickles (slowloris);
* a connection cap: a connection beyond ``max_connections`` open ones is closed as
  soon as it is accepted, so half-open connections cannot hold more descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http import h11_impl

from kairo_ingest import errors, logs
from kairo_ingest.service import http, loop_errors

log = logs.get(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    limit_concurrency: int = 64
    max_connections: int = 128
    max_head_bytes: int = 16 * 1024
    head_timeout_seconds: float = 5.0
    keep_alive_seconds: int = 5
    backlog: int = 128
    descriptor_log_interval_seconds: float = loop_errors.DEFAULT_INTERVAL_SECONDS


class _Config(uvicorn.Config):
    """uvicorn's config, carrying our two limits to the protocol."""

    def __init__(self, app: Any, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.kairo_limits = limits


class _GuardedH11(h11_impl.H11Protocol):
    """h11 with a request-head timeout and a cap on open connections."""

    def __init__(self, config: _Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._limits = config.kairo_limits
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self._limits.max_connections:
            self.transport.abort()
            return
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()  # the next request head is due within the timeout too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(
            self._limits.head_timeout_seconds, self._head_timed_out
        )

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        waiting_for_head = self.cycle is None or self.cycle.response_complete
        if waiting_for_head and not self.transport.is_closing():
            self.transport.close()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers (the service owns SIGTERM and SIGINT),
    telling the starting thread once it listens."""

    def __init__(self, config: _Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._on_started()


class HealthServer:
    """Start with :meth:`start` (blocking: call it through ``asyncio.to_thread``)."""

    def __init__(
        self, health: http.Health, *, host: str, port: int, limits: Limits | None = None
    ) -> None:
        self.health = health
        self.limits = limits or Limits()
        self.descriptor_log = loop_errors.DescriptorExhaustionLog(
            interval_seconds=self.limits.descriptor_log_interval_seconds
        )
        self._host = host
        self._port = port
        self._settled = threading.Event()
        self._server = _Server(
            _Config(
                http.app(health),
                limits=self.limits,
                host=host,
                port=port,
                http=_GuardedH11,
                log_level="warning",
                access_log=False,
                lifespan="off",
                limit_concurrency=self.limits.limit_concurrency,
                h11_max_incomplete_event_size=self.limits.max_head_bytes,
                timeout_keep_alive=self.limits.keep_alive_seconds,
                backlog=self.limits.backlog,
                timeout_graceful_shutdown=1,
            ),
            on_started=self._settled.set,
        )
        self._thread = threading.Thread(target=self._run, name="kairo-health", daemon=True)
        self._failure: str | None = None
        self._socket: socket.socket | None = None

    def start(self, timeout_seconds: float = 10.0) -> str:
        """Listen; return ``host:port``. A port in use is a ConfigError (exit 2).

        The socket is bound here, in the caller's thread, so a bind failure is one
        clear error instead of uvicorn's log line and ``sys.exit``.
        """
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        try:
            self._socket = socket.create_server(
                (self._host, self._port), family=family, backlog=self.limits.backlog
            )
        except OSError as exc:
            raise errors.ConfigError(
                f"cannot listen on {self._host}:{self._port} "
                f"(KAIRO_HTTP_HOST / KAIRO_HTTP_PORT): {exc.strerror or exc}",
                variable="KAIRO_HTTP_PORT",
            ) from None
        self._thread.start()
        if not self._settled.wait(timeout_seconds) or not self._server.started:
            self.stop()
            raise errors.ConfigError(
                f"cannot serve on {self._host}:{self._port} (KAIRO_HTTP_HOST / "
                f"KAIRO_HTTP_PORT): {self._failure or 'the health server did not start'}",
                variable="KAIRO_HTTP_PORT",
            )
        host, port = self._socket.getsockname()[:2]
        return f"{host}:{port}"

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Ask uvicorn to exit and wait for the thread (it is a daemon either way)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.descriptor_log.install(asyncio.get_running_loop())
        try:
            await self._server.serve(sockets=[self._socket] if self._socket else None)
        except SystemExit as exc:  # uvicorn exits on a failed bind
            self._failure = f"health server failed to start (exit {exc.code})"
        except Exception as exc:  # noqa: BLE001 - reported through start()
            self._failure = errors.describe(exc)
            log.error("health_server_failed", error=self._failure)
        finally:
            self._settled.set()
            with contextlib.suppress(Exception):
                await self.health.close()
