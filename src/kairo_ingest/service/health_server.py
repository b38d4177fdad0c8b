"""The health server: the Starlette app of :mod:`.http` on ``webstack``'s uvicorn, on its
own thread and event loop.

Why a thread: ``/livez`` must answer while the worker's loop is blocked (a long CPU
step, a stuck callback), and report that block. Served on the worker's loop it could
only answer once the block was over. The thread runs its own loop with uvicorn, the
readiness probe's connection and a descriptor-exhaustion log guard.

Its limits are :mod:`kairo_ingest.httpguard`'s, as for the console (a 16 MB header was
accepted before).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable

from kairo_ingest import errors, httpguard, logs, webstack
from kairo_ingest.service import http, loop_errors

log = logs.get(__name__)


Limits = httpguard.Limits


class _Server(webstack.Server):
    """``webstack``'s server (no signal handlers of its own), telling the starting thread
    once it listens."""

    def __init__(self, config: httpguard.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

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
            webstack.config(http.app(health), host=host, port=port, limits=self.limits),
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
