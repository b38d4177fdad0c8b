"""LISTEN on a dedicated raw asyncpg connection, reconnecting with backoff.

The connection is not from the SQLAlchemy pool: it lives as long as the worker and only
receives notifications. It is probed every ``ping_interval_seconds`` (a half-open TCP
connection would otherwise look healthy forever) and re-established with a jittered
backoff when it fails. After every (re)connect the worker is woken once, because
notifications sent while we were not listening are gone; polling covers the gap too.

Behind PgBouncer in transaction mode LISTEN does not work; the worker then runs without
this listener (KAIRO_LISTEN_NOTIFY=false) and relies on polling alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from kairo_ingest import errors, logs
from kairo_ingest.db import dberrors
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.queue import sql

_log = logs.get("kairo_ingest.worker")

CONNECT_TIMEOUT_SECONDS = 10.0
PING_TIMEOUT_SECONDS = 10.0


class Listener:
    def __init__(
        self,
        dsn: str,
        on_notify: Callable[[str], None],
        *,
        channel: str = sql.CHANNEL,
        more: Mapping[str, Callable[[str], None]] | None = None,
        ping_interval_seconds: float = 30.0,
        reconnect_base_seconds: float = 0.2,
        reconnect_cap_seconds: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self._dsn = dsn
        self._on_notify = on_notify
        self._channel = channel
        # Other channels on the same connection (the run ledger's beside the run slots').
        self._more = dict(more or {})
        self._ping_interval = ping_interval_seconds
        self._reconnect_base = reconnect_base_seconds
        self._reconnect_cap = reconnect_cap_seconds
        self._rng = rng or random.Random()
        self.listening = asyncio.Event()
        self.connects = 0  # successful (re)connections, for tests and logs
        self.notifications = 0

    def _callback(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        self.notifications += 1
        self._more.get(channel, self._on_notify)(payload)

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._listen_until_lost(stop)
                failures = 0
            except Exception as raw:  # noqa: BLE001 - any failure means: reconnect later
                exc = dberrors.translate(raw)  # the raw connection's errors, classified
                failures += 1
                delay = retry_rules.retry_delay_seconds(
                    failures,
                    self._rng,
                    base_seconds=self._reconnect_base,
                    cap_seconds=self._reconnect_cap,
                )
                kind, _, _ = errors.classify(exc)
                _log.warning(
                    "listener_disconnected",
                    error_kind=kind.value,
                    error=errors.describe(exc),
                    failures=failures,
                    retry_in_seconds=round(delay, 3),
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()

    async def _listen_until_lost(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_SECONDS)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self._channel, self._callback)
            for channel in self._more:
                await conn.add_listener(channel, self._callback)
            self.connects += 1
            self.listening.set()
            _log.debug("listener_connected", channel=self._channel, connects=self.connects)
            # Anything sent while we were not listening is lost: look once now.
            self._on_notify("")
            for on_notify in self._more.values():
                on_notify("")
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._ping_interval):
                        await _first(stop, lost)
                if stop.is_set():
                    return
                if lost.is_set() or conn.is_closed():
                    raise errors.DatabaseUnavailableError("the LISTEN connection was closed")
                async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                    await conn.fetchval(sql.LISTENER_PING)
        finally:
            self.listening.clear()
            if not conn.is_closed():
                try:
                    async with asyncio.timeout(2):
                        await conn.close()
                except Exception:  # noqa: BLE001 - a broken connection cannot close cleanly
                    conn.terminate()


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of the events is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
