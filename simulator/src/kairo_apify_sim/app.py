"""The raw ASGI application: routing, auth, faults, Apify's envelopes and headers.

Endpoints (``/v2/acts/...`` is accepted wherever ``/v2/actors/...`` is)::

    POST /v2/actors/{actorId}/runs                           start       201 {"data": run}
    GET  /v2/actors/{actorId}/runs                           list_runs   {"data": {total, ...}}
    GET  /v2/actor-runs/{runId}?waitForFinish=N              get_run     long-poll, N <= 60
    POST /v2/actor-runs/{runId}/abort?gracefully=true        abort
    GET  /v2/actor-runs/{runId}/key-value-store/records/INPUT input      the raw stored input
    GET  /v2/datasets/{datasetId}/items                      items       raw JSON array
    GET  /v2/actor-runs/{runId}/dataset/items                items
    GET  /v2/actor-runs/{runId}/log, /v2/logs/{runId}        log         text/plain
    GET  /storage/key-value-stores/{storeId}/records/{key}?signature=...   the signed target
         of an INPUT read when ``record_redirects`` is on (no auth; refuses Authorization)

Accounts: a token is an account (no token is one more). A run belongs to the token that
started it: lists show an account its own runs only, and a run, its INPUT, its dataset
items and its log answer 404 ``record-not-found`` to any other token, and so does an
abort, which then does nothing; such requests are counted in ``foreignTokenRequests``.
The signed storage URL of an INPUT redirect needs no token (its signature is the grant),
and only the run's own account gets one.

Platform behaviours, each a setting (see :class:`~kairo_apify_sim.config.SimConfig`):
input defaults in the stored INPUT, visibility lag (404 ``record-not-found`` and absence
from lists just after a start), late creation of a run whose start answer was lost, limit
errors with a status drawn from ``limit_error_statuses``, 302 redirects for record reads,
a TIMING-OUT phase, and aborts that always pass through ABORTING: ``abort_grace_seconds``
for a graceful one, ``forced_abort_seconds`` for a forced one.
A run started without ``memory`` gets its actor's default (``default_memory_mbytes``, or
``actor_memory_mbytes`` per actor), and that is what counts against
``max_total_memory_mbytes``; a ``memory`` that is not a power of 2 from 128 to 32768 MB
is refused (400 ``invalid-parameter``). ``maxTotalChargeUsd`` is echoed in the run's
``options``; a value that is not a non-negative number is refused (400
``invalid-parameter``), and so is one below ``minimal_max_total_charge_usd`` when that is
set (400 ``max-total-charge-usd-below-minimum``). A run started with one stops once its
charge reaches it (:func:`~kairo_apify_sim.state.charge_capped`) and ends
SUCCEEDED or, through ABORTING, ABORTED (``charge_cap_outcome_weights``). The full run
object carries ``pricingInfo`` (pay per event), ``chargedEventCounts``, ``usage``,
``usageUsd`` and ``usageTotalUsd``, which always agree
(:meth:`~kairo_apify_sim.state.SimRun.money`).

Control (no auth, no faults): ``GET /_sim/stats``, ``GET /_sim/runs``,
``GET /_sim/runs/{runId}/plan``, ``GET|POST /_sim/config``, ``POST /_sim/reset``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import gzip
import hmac
import json
import math
import re
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import datasets, faults, platform
from kairo_apify_sim import state as sim_state

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = "application/json; charset=utf-8"
NO_LIMIT = 999_999_999_999  # what Apify reports as the limit of an unlimited items request
MAX_WAIT_FOR_FINISH = 60  # seconds
MAX_LIST_LIMIT = 1000
# A run's memory: a power of 2 within Apify's per-run bounds (the run object's
# ``options.memoryMbytes`` is declared 128..32768 in the official client's models).
MIN_RUN_MEMORY_MBYTES = 128
MAX_RUN_MEMORY_MBYTES = 32_768
# A plain non-negative decimal number (``options.maxTotalChargeUsd`` is declared ``ge=0``).
_USD = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclasses.dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def json_reply(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Reply(status, body, JSON_TYPE, headers or [])


def _describe(exc: ValueError) -> str:
    """One line for a refused config patch: the setting's message, or the JSON parser's."""
    if isinstance(exc, sim_config.SimConfigError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def error_reply(status: int, kind: str, message: str) -> Reply:
    return json_reply(status, {"error": {"type": kind, "message": message}})


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _int(value: str | None, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    return int(value)


def valid_memory(mbytes: int) -> bool:
    """A memory Apify accepts for a run: a power of 2 from 128 MB to 32 GB."""
    power_of_two = mbytes > 0 and mbytes & (mbytes - 1) == 0
    return power_of_two and MIN_RUN_MEMORY_MBYTES <= mbytes <= MAX_RUN_MEMORY_MBYTES


def max_charge(raw: str) -> float | None:
    """The dollar amount of a ``maxTotalChargeUsd``, or None when Apify would refuse it:
    anything but a finite non-negative number."""
    if not _USD.fullmatch(raw):
        return None
    value = float(raw)
    return value if math.isfinite(value) else None


def _datetime(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _wait_seconds(request: Request) -> int:
    """``waitForFinish`` clamped to Apify's 0..60 seconds."""
    return min(MAX_WAIT_FOR_FINISH, max(0, _int(request.query.get("waitForFinish"), 0) or 0))


_ACTOR_RUNS = r"^/v2/(?:actors|acts)/([^/]+)/runs$"
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(pattern), endpoint)
    for method, pattern, endpoint in (
        ("POST", _ACTOR_RUNS, "start"),
        ("GET", _ACTOR_RUNS, "list_runs"),
        ("GET", r"^/v2/actor-runs/([^/]+)$", "get_run"),
        ("POST", r"^/v2/actor-runs/([^/]+)/abort$", "abort"),
        ("GET", r"^/v2/actor-runs/([^/]+)/key-value-store/records/INPUT$", "input"),
        ("GET", r"^/v2/datasets/([^/]+)/items$", "items"),
        ("GET", r"^/v2/actor-runs/([^/]+)/dataset/items$", "items"),
        ("GET", r"^/v2/actor-runs/([^/]+)/log$", "log"),
        ("GET", r"^/v2/logs/([^/]+)$", "log"),
    )
)
_PLAN = re.compile(r"^/_sim/runs/([^/]+)/plan$")
_STORAGE = re.compile(r"^/storage/key-value-stores/([^/]+)/records/([^/]+)$")


class SimulatorApp:
    """ASGI 3 application over a :class:`~kairo_apify_sim.state.SimState`."""

    def __init__(self, state: sim_state.SimState) -> None:
        self.state = state
        self._late: set[asyncio.Task[Reply]] = set()  # starts that create their run later

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return None
        if scope["type"] != "http":
            return None
        request = await _read_request(scope, receive)
        if request is None:
            return None  # the client left before its request was complete: Apify ignores it
        if request.path.startswith("/_sim/"):
            await _send(send, await self._control(request))
            return None
        if request.path.startswith("/storage/"):
            await _send(send, self._storage(request))
            return None
        return await self._api(request, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.wake_all()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ------------------------------------------------------------------ API

    async def _api(self, request: Request, send: Send) -> str | None:
        endpoint, argument = _route(request)
        if endpoint is None:
            await _send(send, argument_reply(argument))
            return None
        state = self.state
        state.counters.requests[endpoint] += 1
        denied = self._check_auth(request)
        if denied is not None:
            state.counters.rejected["auth"] += 1
            await _send(send, denied)
            return None
        fault_cfg = state.config.fault_for(endpoint)
        fault = faults.choose(fault_cfg, state.fault_rng)
        if fault.kind is not None:
            state.counters.faults[f"{endpoint}:{fault.kind}"] += 1
        if fault.delay_seconds:
            state.counters.faults[f"{endpoint}:slow"] += 1
        if fault.strikes_before(endpoint, fault_cfg):
            assert fault.kind is not None
            return await _strike(send, fault.kind, None)
        late = state.config.late_creation_seconds
        if endpoint == "start" and fault.kind is not None and late > 0:
            # The answer will be lost; the run appears only ``late`` seconds from now.
            task = asyncio.create_task(self._start_later(argument or "", request, late))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return await _strike(send, fault.kind, None)
        try:
            reply = await self._handle(endpoint, argument or "", request)
        except (ValueError, binascii.Error) as exc:
            reply = error_reply(400, "invalid-parameter", f"Invalid parameter: {exc}")
        if fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault.kind is not None:
            return await _strike(send, fault.kind, reply)
        await _send(send, reply)
        return None

    @staticmethod
    def _token(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else None
        return given or request.query.get("token") or None

    def _owned(self, run: sim_state.SimRun, request: Request) -> bool:
        """True when the request's token is the account that started the run (a token is
        an account). Every request is recorded per token; another account's is counted in
        ``foreign_token_requests`` and must be answered as if the run did not exist."""
        tag = platform.token_tag(self._token(request))
        run.request_tags[tag] += 1
        if tag != run.token_tag:
            self.state.counters.foreign_token_requests += 1
            return False
        return True

    def _check_auth(self, request: Request) -> Reply | None:
        accepted = self.state.config.accepted_tokens
        if accepted:
            given = self._token(request)
            if given is None:
                return error_reply(
                    401, "token-not-provided", "Authentication token was not provided"
                )
            if not any(hmac.compare_digest(given.encode(), t.encode()) for t in accepted):
                return error_reply(
                    401,
                    "user-or-token-not-found",
                    "User was not found or authentication token is not valid",
                )
        expected = self.state.config.expected_token
        if expected is None:
            return None
        given = self._token(request)
        if not given:
            return error_reply(401, "token-not-provided", "Authentication token was not provided")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return error_reply(
                401,
                "user-or-token-not-found",
                "User was not found or authentication token is not valid",
            )
        return None

    async def _handle(self, endpoint: str, argument: str, request: Request) -> Reply:
        if endpoint == "start":
            return await self._start(argument, request)
        if endpoint == "list_runs":
            return self._list_runs(argument, request)
        if endpoint == "items":
            return self._items(argument, request)
        run = self.state.runs.get(argument)
        if run is None or not self._owned(run, request) or not self.state.visible(run):
            return error_reply(404, "record-not-found", "Actor run was not found")
        if endpoint == "get_run":
            await self.state.wait_for_finish(run, _wait_seconds(request))
            return json_reply(200, {"data": run.to_json()})
        if endpoint == "abort":
            self.state.abort(run, gracefully=_flag(request.query.get("gracefully")))
            return json_reply(200, {"data": run.to_json()})
        if endpoint == "input":
            self.state.counters.input_reads += 1
            if run.stored_input is None:
                return error_reply(404, "record-not-found", "Record was not found")
            if self.state.config.record_redirects:
                return self._redirect_to_storage(run, request)
            return json_reply(200, run.stored_input)
        body = ("\n".join(run.log_lines) + "\n").encode()
        return Reply(200, body, "text/plain; charset=utf-8")

    async def _start(self, actor_id: str, request: Request) -> Reply:
        state = self.state
        query = request.query
        run_input: Any = None
        if request.body:
            try:
                run_input = json.loads(request.body)
            except ValueError:
                return error_reply(400, "invalid-input", "Input is not a valid JSON")
        webhooks = query.get("webhooks")
        if webhooks:
            decoded = json.loads(base64.b64decode(webhooks, validate=True))
            if not isinstance(decoded, list):
                return error_reply(400, "invalid-parameter", "webhooks must be a JSON array")
        memory = _int(query.get("memory"))
        if memory is not None and not valid_memory(memory):
            return error_reply(
                400,
                "invalid-parameter",
                f"Memory must be a power of 2 from {MIN_RUN_MEMORY_MBYTES} "
                f"to {MAX_RUN_MEMORY_MBYTES} MB, got {memory}",
            )
        if memory is None:
            memory = state.memory_for(actor_id)  # the actor's default, counted like any other
        charge_raw = query.get("maxTotalChargeUsd") or None
        charge = None if charge_raw is None else max_charge(charge_raw)
        if charge_raw is not None and charge is None:
            return error_reply(
                400,
                "invalid-parameter",
                f"maxTotalChargeUsd must be a non-negative number, got {charge_raw!r}",
            )
        minimum = state.config.minimal_max_total_charge_usd
        if charge is not None and minimum is not None and charge < minimum:
            return error_reply(
                400,
                "max-total-charge-usd-below-minimum",
                f"maxTotalChargeUsd must be at least {minimum} for this Actor",
            )
        tag = platform.token_tag(self._token(request))
        not_now = state.capacity_error(memory, tag)
        if not_now is not None:
            state.counters.rejected[not_now] += 1
            return error_reply(
                state.limit_status(), not_now, f"Cannot start the run now ({not_now})"
            )
        run = state.create_run(
            actor_id,
            run_input,
            timeout_secs=_int(query.get("timeout")),
            memory_mbytes=memory,
            max_items=_int(query.get("maxItems")),
            max_total_charge_usd=charge,
            build=query.get("build"),
            token_tag=tag,
        )
        await state.wait_for_finish(run, _wait_seconds(request))
        return json_reply(201, {"data": run.to_json()})

    async def _start_later(self, actor_id: str, request: Request, seconds: float) -> Reply:
        await asyncio.sleep(seconds)
        self.state.counters.late_starts += 1
        return await self._start(actor_id, request)

    def _redirect_to_storage(self, run: sim_state.SimRun, request: Request) -> Reply:
        base = self.state.config.storage_base_url
        if not base:
            base = f"http://{request.headers.get('host', '127.0.0.1')}"
        sig = platform.signature(run.kvs_id, "INPUT")
        location = (
            f"{base.rstrip('/')}/storage/key-value-stores/{run.kvs_id}/records/INPUT"
            f"?signature={sig}"
        )
        self.state.counters.redirects += 1
        return Reply(302, b"", "text/plain; charset=utf-8", [("Location", location)])

    def _storage(self, request: Request) -> Reply:
        """The signed record URL: no token needed, and one that carries a token is refused."""
        state = self.state
        state.counters.requests["storage"] += 1
        match = _STORAGE.match(request.path)
        if request.method != "GET" or match is None:
            return error_reply(404, "page-not-found", "There is no storage object at this URL")
        if "authorization" in request.headers:
            state.counters.rejected["storage_authorization"] += 1
            return error_reply(
                400, "invalid-header", "Only one auth mechanism allowed; signature given"
            )
        store_id, key = (urllib.parse.unquote(part) for part in match.groups())
        if not platform.signature_ok(store_id, key, request.query.get("signature")):
            return error_reply(403, "invalid-signature", "Signature does not match")
        run = next((r for r in state.runs.values() if r.kvs_id == store_id), None)
        if run is None or key != "INPUT" or run.stored_input is None:
            return error_reply(404, "record-not-found", "Record was not found")
        return json_reply(200, run.stored_input)

    def _list_runs(self, actor_id: str, request: Request) -> Reply:
        query = request.query
        offset = max(0, _int(query.get("offset"), 0) or 0)
        limit = min(MAX_LIST_LIMIT, max(1, _int(query.get("limit"), MAX_LIST_LIMIT) or 1))
        desc = _flag(query.get("desc"))
        wanted = {s.strip() for s in query["status"].split(",")} if query.get("status") else None
        found = self.state.list_runs(
            actor_id,
            status=wanted,
            started_after=_datetime(query.get("startedAfter")),
            started_before=_datetime(query.get("startedBefore")),
            desc=desc,
        )
        # An account lists its own runs only (a token is an account).
        tag = platform.token_tag(self._token(request))
        found = [run for run in found if run.token_tag == tag]
        page = [run.to_json(short=True) for run in found[offset : offset + limit]]
        data = {
            "total": len(found),
            "offset": offset,
            "limit": limit,
            "count": len(page),
            "desc": desc,
            "items": page,
        }
        return json_reply(200, {"data": data})

    def _items(self, dataset_or_run_id: str, request: Request) -> Reply:
        state = self.state
        run = state.by_dataset.get(dataset_or_run_id) or state.runs.get(dataset_or_run_id)
        if run is None or not self._owned(run, request):
            return error_reply(404, "record-not-found", "Dataset was not found")
        query = request.query
        if query.get("format", "json") != "json":
            return error_reply(400, "invalid-parameter", "Only format=json is simulated")
        total = run.available_items(asyncio.get_running_loop().time())
        offset = max(0, _int(query.get("offset"), 0) or 0)
        requested = _int(query.get("limit"))
        limit = NO_LIMIT if requested is None or requested <= 0 else requested
        desc = _flag(query.get("desc"))
        clean = _flag(query.get("clean"))
        skip_empty = clean or _flag(query.get("skipEmpty"))
        skip_hidden = clean or _flag(query.get("skipHidden"))
        fields = [f for f in query.get("fields", "").split(",") if f]
        omit = {f for f in query.get("omit", "").split(",") if f}
        window = datasets.items_window(
            state.config,
            run.actor,
            run.id,
            run.input,
            total=total,
            offset=offset,
            limit=limit,
            desc=desc,
        )
        items: list[dict[str, Any]] = []
        for item in window:
            if skip_empty and not item:
                continue
            if skip_hidden:
                item = {k: v for k, v in item.items() if not k.startswith("#")}
            if fields:
                item = {k: item[k] for k in fields if k in item}
            if omit:
                item = {k: v for k, v in item.items() if k not in omit}
            items.append(item)
        scanned = max(0, min(total, offset + limit) - offset)
        headers = [
            ("X-Apify-Pagination-Total", str(total)),
            ("X-Apify-Pagination-Offset", str(offset)),
            ("X-Apify-Pagination-Limit", str(limit)),
            ("X-Apify-Pagination-Count", str(scanned)),
            ("X-Apify-Pagination-Desc", "true" if desc else "false"),
        ]
        return json_reply(200, items, headers)

    # ------------------------------------------------------------------ control

    async def _control(self, request: Request) -> Reply:
        state = self.state
        path, method = request.path, request.method
        if path == "/_sim/stats" and method == "GET":
            return json_reply(200, state.stats())
        if path == "/_sim/runs" and method == "GET":
            return json_reply(200, {"runs": state.run_summaries()})
        if path == "/_sim/reset" and method == "POST":
            state.reset()
            return json_reply(200, {"ok": True})
        if path == "/_sim/config" and method == "GET":
            return json_reply(200, state.config.to_json())
        if path == "/_sim/config" and method == "POST":
            try:
                patch = json.loads(request.body or b"{}")
                if not isinstance(patch, dict):
                    raise sim_config.SimConfigError("the config patch must be a JSON object")
                state.apply_config(patch)
            except ValueError as exc:
                return error_reply(400, "invalid-config", _describe(exc))
            return json_reply(200, state.config.to_json())
        match = _PLAN.match(path)
        if match and method == "GET":
            run_id = urllib.parse.unquote(match.group(1))
            if run_id not in state.runs:
                return error_reply(404, "record-not-found", "Actor run was not found")
            plan = state.served_plan(run_id)
            kinds = {kind: plan.count(kind) for kind in ("content", "duplicate", "error")}
            kinds |= {kind: plan.count(kind) for kind in ("no_id", "empty")}
            return json_reply(
                200,
                {
                    "itemCount": plan.item_count,
                    "kinds": kinds,
                    "contentIds": list(plan.content_ids),
                    "rows": [row.kind for row in plan.rows],
                },
            )
        return error_reply(404, "page-not-found", "No such control endpoint")


def argument_reply(reason: str | None) -> Reply:
    if reason == "method":
        return error_reply(405, "method-not-allowed", "This method is not allowed here")
    return error_reply(404, "page-not-found", "There is no API endpoint at this URL")


def _route(request: Request) -> tuple[str | None, str | None]:
    """``(endpoint, path argument)``, or ``(None, "method" | "path")`` when nothing matches."""
    path_matched = False
    for method, pattern, endpoint in _ROUTES:
        match = pattern.match(request.path)
        if match is None:
            continue
        path_matched = True
        if method == request.method:
            return endpoint, urllib.parse.unquote(match.group(1))
    return None, "method" if path_matched else "path"


async def _read_request(scope: Scope, receive: Receive) -> Request | None:
    """The whole request, or None when the client disconnected before sending all of it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    body = b"".join(chunks)
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) != len(body):
        return None  # a body cut short: Apify never sees an incomplete request
    encoding = headers.get("content-encoding", "").lower()
    if body and encoding == "gzip":
        body = gzip.decompress(body)
    elif body and encoding == "deflate":
        body = zlib.decompress(body)
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    path = path.split("?", 1)[0]
    query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    return Request(scope["method"], path, query, headers, body)


async def _send(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers += [(name.lower().encode(), value.encode()) for name, value in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


async def _strike(send: Send, kind: str, reply: Reply | None) -> str | None:
    """Answer with the fault instead of (or over) ``reply``; a sentinel closes the connection."""
    if kind == "drop":
        return faults.DROP_SENTINEL
    if kind == "truncate":
        body = reply.body if reply is not None else b'{"data":{"id":"x","status":"RUNNING"}}'
        headers = [
            (b"content-type", JSON_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        status = reply.status if reply is not None else 200
        await send({"type": "http.response.start", "status": status, "headers": headers})
        half = body[: len(body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        return faults.DROP_SENTINEL
    status, body, content_type = faults.error_reply(kind)
    await _send(send, Reply(status, body, content_type))
    return None
