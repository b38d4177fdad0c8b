"""uvicorn with limits it does not have on its own: a request-head timeout and a cap on
open connections (the health server and the console both serve through it, by way of
:mod:`kairo_ingest.webstack`).

* ``limit_concurrency``: beyond it uvicorn answers 503 at once;
* ``h11_max_incomplete_event_size``: a request head over 16 KiB is refused;
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
import dataclasses
from typing import Any

import uvicorn
from uvicorn.protocols.http import h11_impl

DESCRIPTOR_LOG_INTERVAL_SECONDS = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    limit_concurrency: int = 64
    max_connections: int = 128
    max_head_bytes: int = 16 * 1024
    head_timeout_seconds: float = 5.0
    keep_alive_seconds: int = 5
    backlog: int = 128
    descriptor_log_interval_seconds: float = DESCRIPTOR_LOG_INTERVAL_SECONDS


class Config(uvicorn.Config):
    """uvicorn's config, carrying our two limits to the protocol."""

    def __init__(self, app: Any, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.kairo_limits = limits


class GuardedH11(h11_impl.H11Protocol):
    """h11 with a request-head timeout and a cap on open connections."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
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


def uvicorn_settings(limits: Limits) -> dict[str, Any]:
    """The keyword arguments that give a :class:`Config` these limits."""
    return {
        "limits": limits,
        "http": GuardedH11,
        "limit_concurrency": limits.limit_concurrency,
        "h11_max_incomplete_event_size": limits.max_head_bytes,
        "timeout_keep_alive": limits.keep_alive_seconds,
        "backlog": limits.backlog,
    }
