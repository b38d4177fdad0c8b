"""The health and metrics endpoints: a Starlette app, served by :mod:`.health_server`.

* ``/livez``: 200 while the worker's event loop is responsive. A ticker task on that
  loop stamps a heartbeat; the endpoint itself is served from another thread and loop
  (see :mod:`.health_server`), so it can answer 503 with the lag while the worker's
  loop is blocked, which it could not do when it was served on that loop.
* ``/readyz``: 200 when the database answers (over the probe's own single connection,
  :mod:`kairo_ingest.db.probe`), the schema is at head and the worker is not shutting down;
  otherwise 503 with a JSON reason. Both answers name the Apify in use (``apify``).
* ``/metrics``: the Prometheus text format.

Each answers GET and HEAD (405 otherwise), with ``Cache-Control: no-store``; a request
body is refused (413), as is a request head over the limits of :mod:`kairo_ingest.httpguard`.
"""

from __future__ import annotations

import asyncio
import json
import pathlib

from starlette import requests, responses, routing, types

from kairo_ingest import clock, errors, logs, metrics, webstack
from kairo_ingest.db import migrate, probe

log = logs.get(__name__)

HEADERS = (("cache-control", "no-store"), ("x-content-type-options", "nosniff"))

LOOP_LAG_LIMIT_SECONDS = 5.0
TICK_SECONDS = 0.5
# A check that reconnects needs more than Kubernetes' default probe timeout (1 s): give
# /readyz a timeoutSeconds of 2 or more.
DB_CHECK_TIMEOUT_SECONDS = 1.5


class Health:
    """What the probes report; the service flips ``draining`` on the first SIGTERM.

    ``beat``/``tick_forever`` run on the worker's loop; ``live`` and ``ready`` run on
    the health server's loop. They share only floats and a bool (atomic under the GIL).
    """

    def __init__(
        self,
        database_url: str,
        *,
        apify: str,
        lag_limit_seconds: float = LOOP_LAG_LIMIT_SECONDS,
        tick_seconds: float = TICK_SECONDS,
        db_timeout_seconds: float = DB_CHECK_TIMEOUT_SECONDS,
        clock_: clock.Clock = clock.SYSTEM,
        migrations: pathlib.Path | None = None,
    ) -> None:
        self.apify = apify
        self.draining = False
        self._lag_limit_seconds = lag_limit_seconds
        self._tick_seconds = tick_seconds
        self._clock = clock_
        self._last_beat = clock_.monotonic()
        self._probe = probe.ReadyProbe(database_url, timeout_seconds=db_timeout_seconds)
        self._head = migrate.head_revision(migrations)

    def beat(self) -> None:
        self._last_beat = self._clock.monotonic()

    async def tick_forever(self) -> None:
        """Run on the worker's loop: the heartbeat ``/livez`` measures."""
        while True:
            self.beat()
            await asyncio.sleep(self._tick_seconds)

    def loop_lag_seconds(self) -> float:
        """How late the worker's loop is beyond one tick (0 while it keeps up)."""
        return max(0.0, self._clock.monotonic() - self._last_beat - self._tick_seconds)

    def live(self) -> tuple[bool, str]:
        lag = self.loop_lag_seconds()
        if lag > self._lag_limit_seconds:
            return False, f"event loop stalled for {lag:.1f}s"
        return True, "ok"

    async def ready(self) -> tuple[bool, str]:
        if self.draining:
            return False, "shutting down"
        try:
            current = await self._probe.schema_revision()
        except errors.DatabaseUnavailableError as exc:
            # The probe is unauthenticated: the detail (host, user, the server's words) goes
            # to the log, the answer says only what kind of trouble it is.
            log.warning("readiness_database_unavailable", error=exc.message)
            return False, "database unavailable (see the worker's log)"
        if current != self._head:
            return False, f"schema at {current or 'nothing'}, expected {self._head}"
        return True, "ok"

    async def close(self) -> None:
        """Close the probe's connection (on the loop that used it)."""
        await self._probe.close()


def app(health: Health) -> types.ASGIApp:
    """The three endpoints on a Starlette router, behind a body cap of nothing and the
    fixed headers (``webstack``)."""

    async def livez(_: requests.Request) -> responses.Response:
        lag = round(health.loop_lag_seconds(), 3)
        return _json(*health.live(), loop_lag_seconds=lag)

    async def readyz(_: requests.Request) -> responses.Response:
        return _json(*(await health.ready()), apify=health.apify)

    async def prometheus(_: requests.Request) -> responses.Response:
        return _answer(200, metrics.render(), metrics.CONTENT_TYPE)

    router = routing.Router(
        [
            routing.Route("/livez", livez, methods=["GET"]),
            routing.Route("/readyz", readyz, methods=["GET"]),
            routing.Route("/metrics", prometheus, methods=["GET"]),
        ],
        redirect_slashes=False,
        default=_answer(404, b"not found\n", "text/plain"),
    )
    return webstack.FixedHeaders(webstack.BodyLimit(router, max_bytes=0), headers=HEADERS)


def _json(ok: bool, reason: str, **extra: object) -> responses.Response:
    answer = {"status": "ok" if ok else "unavailable", "reason": reason, **extra}
    return _answer(200 if ok else 503, json.dumps(answer).encode(), "application/json")


def _answer(status: int, body: bytes, content_type: str) -> responses.Response:
    """An answer sent chunked, without Content-Length, as the health server always did
    (a probe reads either; the tests read a kept-alive connection's answers so)."""
    response = responses.Response(body, status, media_type=content_type)
    del response.headers["content-length"]
    return response
