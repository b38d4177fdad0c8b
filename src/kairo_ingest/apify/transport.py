"""The one shared ``httpx.AsyncClient`` and a single request attempt.

Sizing: a worker holds thousands of concurrent long-polls (``waitForFinish`` up to 60 s),
each on its own HTTP/1.1 keep-alive connection, so there is no connection cap and every
idle connection is kept (httpcore closes *all* idle connections once a pool holds more than
``max_keepalive_connections``).

httpcore's pool rescans every connection, and for each idle one builds a list of all of
them, on every request and every response close: the cost of one request grows with the
square of the pool size, and 1,000 connections already spend seconds of CPU per second.
:class:`ShardedTransport` therefore spreads requests over many small pools (one TLS
context shared by all); the client on top is still the one ``httpx.AsyncClient``. Each
asyncio task sticks to the pool it was first given, so a wait's successive requests reuse
its keep-alive connection instead of opening one per request.

Each attempt is bounded twice: httpx's per-phase timeouts and an ``asyncio.timeout`` over
the whole attempt.

The token lives in :class:`BearerAuth` only. It is added to the ``Authorization`` header
of each request to the API and never appears in a URL, a repr, a log line or an error.

Redirects are not followed, except for storage reads (``follow_redirects``): Apify may
answer a key-value record read with a 302 to a signed URL on its storage host. That hop
is sent without credentials (the signature is the credential, and a signed URL refuses
a second one), so the token never reaches another host.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import weakref
from collections.abc import Generator, Mapping
from typing import Any

import httpx

import kairo_ingest
from kairo_ingest import redaction
from kairo_ingest.apify import mapping

USER_AGENT = f"kairo-ingest/{kairo_ingest.__version__} (+httpx/{httpx.__version__})"
KEEPALIVE_EXPIRY = 30.0  # seconds an idle connection stays in the pool
CONNECT_TIMEOUT_CAP = 10.0  # seconds
POOL_SHARDS = 256  # small pools: ~20 connections each at 5,000 concurrent waits
MAX_REDIRECTS = 3  # hops followed for a storage read
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class BearerAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <token>``; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return f"BearerAuth({redaction.MASK})"


class ShardedTransport(httpx.AsyncBaseTransport):
    """``shards`` independent connection pools with one TLS context; a task keeps its pool."""

    def __init__(self, shards: int = POOL_SHARDS) -> None:
        limits = httpx.Limits(
            max_connections=None,
            max_keepalive_connections=None,
            keepalive_expiry=KEEPALIVE_EXPIRY,
        )
        tls = httpx.create_ssl_context()
        self._pools = [
            httpx.AsyncHTTPTransport(verify=tls, limits=limits, trust_env=False)
            for _ in range(max(1, shards))
        ]
        self._turn = itertools.cycle(self._pools)
        self._by_task: weakref.WeakKeyDictionary[asyncio.Task[Any], httpx.AsyncHTTPTransport]
        self._by_task = weakref.WeakKeyDictionary()

    def _pool(self) -> httpx.AsyncHTTPTransport:
        task = asyncio.current_task()
        if task is None:
            return next(self._turn)
        pool = self._by_task.get(task)
        if pool is None:
            pool = self._by_task[task] = next(self._turn)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool().handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def build_http_client(
    base_url: str, token: str | None, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The shared client: no connection cap, keep-alive, our User-Agent, bearer auth."""
    limits = httpx.Limits(
        max_connections=None, max_keepalive_connections=None, keepalive_expiry=KEEPALIVE_EXPIRY
    )
    return httpx.AsyncClient(
        base_url=base_url,
        auth=BearerAuth(token) if token else None,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        limits=limits,
        timeout=httpx.Timeout(30.0, connect=CONNECT_TIMEOUT_CAP),
        transport=transport if transport is not None else ShardedTransport(),
        follow_redirects=False,
        trust_env=False,
    )


def attempt_timeout(seconds: float) -> httpx.Timeout:
    """httpx's per-phase timeouts for an attempt that must end within ``seconds``."""
    seconds = max(seconds, 0.001)
    return httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_CAP))


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """A 2xx answer with its parsed JSON body (``None`` for an empty body, or when the
    caller parses ``content`` itself)."""

    status_code: int
    headers: httpx.Headers
    body: Any
    content: bytes = b""


async def request_json(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    operation: str,
    timeout_seconds: float,
    params: Mapping[str, str | int] | None = None,
    json_body: Any = None,
    side_effect: bool = False,
    follow_redirects: bool = False,
    parse_json: bool = True,
) -> Reply:
    """One attempt: send, check the status, parse the JSON body; every failure is typed.

    ``side_effect`` (a start) turns failures that may have happened after the request
    reached Apify into :class:`~kairo_ingest.errors.ApifyStartUnknownError`.
    ``follow_redirects`` (GET storage reads only) follows up to ``MAX_REDIRECTS`` hops,
    each without the token. ``parse_json=False`` leaves the body to the caller
    (``Reply.content``): dataset pages are decoded item by item.
    """
    content: bytes | None = None
    headers: dict[str, str] = {}
    if json_body is not None:
        content = json.dumps(json_body, separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
    try:
        async with asyncio.timeout(timeout_seconds):
            response = await http.request(
                method,
                path,
                params=dict(params) if params else None,
                content=content,
                headers=headers,
                timeout=attempt_timeout(timeout_seconds),
            )
            if follow_redirects and method == "GET":
                response = await _follow(http, response, timeout_seconds)
    except (httpx.HTTPError, TimeoutError) as exc:
        raise mapping.error_for_exception(
            exc, operation=operation, side_effect=side_effect
        ) from exc
    if not 200 <= response.status_code < 300:
        raise mapping.error_for_response(response, operation=operation, side_effect=side_effect)
    if not response.content or not parse_json:
        return Reply(response.status_code, response.headers, None, response.content)
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        raise mapping.malformed_body(
            response, operation=operation, reason="body is not JSON", side_effect=side_effect
        ) from exc
    return Reply(response.status_code, response.headers, body)


async def _follow(
    http: httpx.AsyncClient, response: httpx.Response, timeout_seconds: float
) -> httpx.Response:
    """Follow a storage read's redirects without credentials; no downgrade to http."""
    for _ in range(MAX_REDIRECTS):
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return response
        target = response.url.join(location)
        if target.scheme not in ("http", "https") or (
            response.url.scheme == "https" and target.scheme != "https"
        ):
            return response  # refused: reported as the 3xx it is
        await response.aclose()
        response = await http.request(
            "GET", target, auth=None, timeout=attempt_timeout(timeout_seconds)
        )
    return response
