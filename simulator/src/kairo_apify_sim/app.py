"""The ASGI application: Starlette routing, then auth, faults, Apify's envelopes and headers.

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

Routing is Starlette's, on the path as sent (an id's ``%2F`` stays inside its segment),
each route for exactly its method (no HEAD for a GET). Another method on an API path is
405 ``method-not-allowed``; an unknown API path is 404 ``page-not-found``; under ``/_sim/``
and ``/storage/`` both are 404 with those areas' own messages. Answers carry exactly
``Content-Type``, ``Content-Length`` and the endpoint's own headers.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import functools
import gzip
import hmac
import json
import math
import re
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from starlette import responses, routing, types

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import datasets, faults, platform
from kairo_apify_sim import state as sim_state

Handler = Callable[["Request"], Awaitable[responses.Response]]

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
# Set in the scope by an answer that closes the connection instead (see ``_Dropped``).
_CLOSE = "kairo_apify_sim.close"


@dataclasses.dataclass(slots=True)
class Request:
    """A request as Apify reads it: the query's last value per name (blank ones left
    out), headers by lowercase name (the last one of a name), the body decompressed."""

    params: dict[str, str]  # the path's, percent-decoded
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


def reply(
    status: int,
    body: bytes,
    content_type: str = JSON_TYPE,
    headers: Iterable[tuple[str, str]] = (),
) -> responses.Response:
    """An answer with exactly these headers, in this order (Starlette adds none)."""
    fixed = {"content-type": content_type, "content-length": str(len(body))}
    return responses.Response(body, status, {**fixed, **dict(headers)})


def json_reply(
    status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()
) -> responses.Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return reply(status, body, JSON_TYPE, headers)


def _describe(exc: ValueError) -> str:
    """One line for a refused config patch: the setting's message, or the JSON parser's."""
    if isinstance(exc, sim_config.SimConfigError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def error_reply(status: int, kind: str, message: str) -> responses.Response:
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


METHOD_NOT_ALLOWED = error_reply(405, "method-not-allowed", "This method is not allowed here")
NO_ENDPOINT = error_reply(404, "page-not-found", "There is no API endpoint at this URL")
NO_CONTROL = error_reply(404, "page-not-found", "No such control endpoint")
NO_STORAGE = error_reply(404, "page-not-found", "There is no storage object at this URL")


class _Route(routing.Route):
    """A route for exactly its method (Starlette would add HEAD to GET; Apify does not),
    answering ``refused`` to any other method on its path."""

    def __init__(self, path: str, handle: Handler, method: str, refused: types.ASGIApp) -> None:
        super().__init__(path, _Endpoint(handle), methods=[method])
        self.methods = {method}
        self.method = method
        self.refused = refused

    async def handle(self, scope: types.Scope, receive: types.Receive, send: types.Send) -> None:
        if scope["method"] != self.method:
            await self.refused(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class _Endpoint:
    """A route's ASGI app: the whole request first, as Apify reads it, then ``handle``'s
    answer, or none when the client left before its request was complete.

    An ASGI app rather than a Starlette request handler: the simulator answers thousands
    of polls a second, and with Starlette's ``Request`` (its body stream, its exception
    wrapper) the app's own time per run poll was 1.45 times the hand-routed app's, against
    1.18 times like this (measured in one process, interleaved)."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle

    async def __call__(self, scope: types.Scope, receive: types.Receive, send: types.Send) -> None:
        request = await _read_request(scope, receive)
        if request is not None:
            answer = await self.handle(request)
            await answer(scope, receive, send)


class _Dropped(responses.Response):
    """The connection closes instead of an answer; with ``truncated``, after that answer's
    head and half its body. The app returns :data:`faults.DROP_SENTINEL` to uvicorn."""

    def __init__(self, truncated: responses.Response | None = None) -> None:
        super().__init__()
        self.truncated = truncated

    async def __call__(self, scope: types.Scope, receive: types.Receive, send: types.Send) -> None:
        if self.truncated is not None:
            head = {"status": self.truncated.status_code, "headers": self.truncated.raw_headers}
            await send({"type": "http.response.start", **head})
            half = self.truncated.body[: len(self.truncated.body) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
        scope[_CLOSE] = True


class SimulatorApp:
    """ASGI 3 application over a :class:`~kairo_apify_sim.state.SimState`."""

    def __init__(self, state: sim_state.SimState) -> None:
        self.state = state
        self._late: set[asyncio.Task[responses.Response]] = set()  # starts made later
        api: list[tuple[str, str, str]] = [
            ("GET", "/v2/actor-runs/{id}", "get_run"),
            ("GET", "/v2/datasets/{id}/items", "items"),
            ("GET", "/v2/actor-runs/{id}/dataset/items", "items"),
            ("POST", "/v2/actor-runs/{id}/abort", "abort"),
            ("GET", "/v2/actor-runs/{id}/key-value-store/records/INPUT", "input"),
            ("GET", "/v2/actor-runs/{id}/log", "log"),
            ("GET", "/v2/logs/{id}", "log"),
        ]
        for actors in ("actors", "acts"):
            api.append(("POST", f"/v2/{actors}/{{id}}/runs", "start"))
            api.append(("GET", f"/v2/{actors}/{{id}}/runs", "list_runs"))
        control: list[tuple[str, str, Handler]] = [
            ("GET", "/_sim/stats", self._stats),
            ("GET", "/_sim/runs", self._runs),
            ("GET", "/_sim/runs/{id}/plan", self._plan),
            ("POST", "/_sim/reset", self._reset),
            ("GET", "/_sim/config", self._config),
            ("POST", "/_sim/config", self._patch_config),
        ]
        self.router = routing.Router(
            [
                *(
                    _Route(path, functools.partial(self._api, name), m, METHOD_NOT_ALLOWED)
                    for m, path, name in api
                ),
                *(_Route(path, handle, m, NO_CONTROL) for m, path, handle in control),
                _Route(
                    "/storage/key-value-stores/{store}/records/{key}",
                    self._storage,
                    "GET",
                    self._no_storage,
                ),
            ],
            redirect_slashes=False,
            default=self._not_found,
            lifespan=self._lifespan,
        )

    async def __call__(
        self, scope: types.Scope, receive: types.Receive, send: types.Send
    ) -> str | None:
        if scope["type"] == "http":
            # Apify routes on the path as sent: an id's encoded slash stays in its segment.
            raw_path = scope.get("raw_path")
            if raw_path:
                scope["path"] = raw_path.decode("latin-1").split("?", 1)[0]
        elif scope["type"] != "lifespan":
            return None
        await self.router(scope, receive, send)
        # uvicorn closes the connection of an app that returns something (and logs it,
        # which the server hides): that is how a dropped connection is simulated.
        return faults.DROP_SENTINEL if scope.get(_CLOSE) else None

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: object) -> AsyncIterator[None]:
        yield
        self.state.wake_all()

    async def _not_found(
        self, scope: types.Scope, receive: types.Receive, send: types.Send
    ) -> None:
        path = scope["path"]
        if path.startswith("/_sim/"):
            await NO_CONTROL(scope, receive, send)
        elif path.startswith("/storage/"):
            await self._no_storage(scope, receive, send)
        else:
            await NO_ENDPOINT(scope, receive, send)

    async def _no_storage(
        self, scope: types.Scope, receive: types.Receive, send: types.Send
    ) -> None:
        self.state.counters.requests["storage"] += 1
        await NO_STORAGE(scope, receive, send)

    # ------------------------------------------------------------------ API

    async def _api(self, endpoint: str, request: Request) -> responses.Response:
        state = self.state
        argument = request.params["id"]
        state.counters.requests[endpoint] += 1
        denied = self._check_auth(request)
        if denied is not None:
            state.counters.rejected["auth"] += 1
            return denied
        fault_cfg = state.config.fault_for(endpoint)
        fault = faults.choose(fault_cfg, state.fault_rng)
        if fault.kind is not None:
            state.counters.faults[f"{endpoint}:{fault.kind}"] += 1
        if fault.delay_seconds:
            state.counters.faults[f"{endpoint}:slow"] += 1
        if fault.strikes_before(endpoint, fault_cfg):
            assert fault.kind is not None
            return _strike(fault.kind, None)
        late = state.config.late_creation_seconds
        if endpoint == "start" and fault.kind is not None and late > 0:
            # The answer will be lost; the run appears only ``late`` seconds from now.
            task = asyncio.create_task(self._start_later(argument, request, late))
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return _strike(fault.kind, None)
        try:
            answer = await self._handle(endpoint, argument, request)
        except (ValueError, binascii.Error) as exc:
            answer = error_reply(400, "invalid-parameter", f"Invalid parameter: {exc}")
        if fault.delay_seconds:
            await asyncio.sleep(fault.delay_seconds)
        if fault.kind is not None:
            return _strike(fault.kind, answer)
        return answer

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

    def _check_auth(self, request: Request) -> responses.Response | None:
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

    async def _handle(self, endpoint: str, argument: str, request: Request) -> responses.Response:
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
        return reply(200, body, "text/plain; charset=utf-8")

    async def _start(self, actor_id: str, request: Request) -> responses.Response:
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

    async def _start_later(
        self, actor_id: str, request: Request, seconds: float
    ) -> responses.Response:
        await asyncio.sleep(seconds)
        self.state.counters.late_starts += 1
        return await self._start(actor_id, request)

    def _redirect_to_storage(self, run: sim_state.SimRun, request: Request) -> responses.Response:
        base = self.state.config.storage_base_url
        if not base:
            base = f"http://{request.headers.get('host', '127.0.0.1')}"
        sig = platform.signature(run.kvs_id, "INPUT")
        location = (
            f"{base.rstrip('/')}/storage/key-value-stores/{run.kvs_id}/records/INPUT"
            f"?signature={sig}"
        )
        self.state.counters.redirects += 1
        return reply(302, b"", "text/plain; charset=utf-8", [("Location", location)])

    async def _storage(self, request: Request) -> responses.Response:
        """The signed record URL: no token needed, and one that carries a token is refused."""
        state = self.state
        state.counters.requests["storage"] += 1
        if "authorization" in request.headers:
            state.counters.rejected["storage_authorization"] += 1
            return error_reply(
                400, "invalid-header", "Only one auth mechanism allowed; signature given"
            )
        store_id, key = request.params["store"], request.params["key"]
        if not platform.signature_ok(store_id, key, request.query.get("signature")):
            return error_reply(403, "invalid-signature", "Signature does not match")
        run = next((r for r in state.runs.values() if r.kvs_id == store_id), None)
        if run is None or key != "INPUT" or run.stored_input is None:
            return error_reply(404, "record-not-found", "Record was not found")
        return json_reply(200, run.stored_input)

    def _list_runs(self, actor_id: str, request: Request) -> responses.Response:
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

    def _items(self, dataset_or_run_id: str, request: Request) -> responses.Response:
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

    async def _stats(self, _: Request) -> responses.Response:
        return json_reply(200, self.state.stats())

    async def _runs(self, _: Request) -> responses.Response:
        return json_reply(200, {"runs": self.state.run_summaries()})

    async def _reset(self, _: Request) -> responses.Response:
        self.state.reset()
        return json_reply(200, {"ok": True})

    async def _config(self, _: Request) -> responses.Response:
        return json_reply(200, self.state.config.to_json())

    async def _patch_config(self, request: Request) -> responses.Response:
        try:
            patch = json.loads(request.body or b"{}")
            if not isinstance(patch, dict):
                raise sim_config.SimConfigError("the config patch must be a JSON object")
            self.state.apply_config(patch)
        except ValueError as exc:
            return error_reply(400, "invalid-config", _describe(exc))
        return json_reply(200, self.state.config.to_json())

    async def _plan(self, request: Request) -> responses.Response:
        state = self.state
        run_id = request.params["id"]
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


async def _read_request(scope: types.Scope, receive: types.Receive) -> Request | None:
    """The whole request, or None when the client disconnected before sending all of it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", [])
    }
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) != len(body):
        return None  # a body cut short: Apify never sees an incomplete request
    encoding = headers.get("content-encoding", "").lower()
    if body and encoding == "gzip":
        body = gzip.decompress(body)
    elif body and encoding == "deflate":
        body = zlib.decompress(body)
    params = {name: urllib.parse.unquote(value) for name, value in scope["path_params"].items()}
    query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    return Request(params, query, headers, body)


def _strike(kind: str, answer: responses.Response | None) -> responses.Response:
    """The fault's answer instead of (or over) ``answer``: an error, or a closed connection."""
    if kind == "drop":
        return _Dropped()
    if kind == "truncate":
        body = answer.body if answer is not None else b'{"data":{"id":"x","status":"RUNNING"}}'
        status = answer.status_code if answer is not None else 200
        return _Dropped(truncated=reply(status, bytes(body)))
    status, body, content_type = faults.error_reply(kind)
    return reply(status, body, content_type)
