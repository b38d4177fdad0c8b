"""``ApifyClient``: the async Apify API v2 client the pipeline calls.

Every method is bounded by a monotonic :class:`~kairo_ingest.clock.Deadline`: the one the
caller passes, or ``default_budget_seconds`` from now. Each attempt is bounded by the time
left, retries (see :mod:`~kairo_ingest.apify.retrying`) stop before the deadline, and the
whole call sits in an ``asyncio.timeout`` of the time left plus ``deadline_slack_seconds``.

Waiting uses Apify's long-poll, ``GET /v2/actor-runs/{id}?waitForFinish=N`` with
``N = min(60, whole seconds left)``, so a run that ends is known within one round trip.

The pipeline-facing calls::

    async with ApifyClient(base_url, token) as api:
        run = await reconcile.start_or_adopt(api, actor_id, run_input, intent_at=intent_at)
        end = await api.wait_or_abort(run.id, clock.Deadline.after(900))
        async for index, item in api.iter_dataset_items(end.run.default_dataset_id, limit=None):
            ...
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import functools
import json
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from kairo_ingest import clock, errors, logs, redaction, tracing
from kairo_ingest.apify import models, pages, retrying
from kairo_ingest.apify import transport as _transport_module

log = logs.get(__name__)

T = TypeVar("T")

MAX_WAIT_FOR_FINISH = 60  # seconds, Apify's ceiling for waitForFinish
LONG_POLL_MARGIN = 10.0  # seconds an answer may take beyond the waitForFinish we asked for
REQUEST_TIMEOUT = 30.0  # seconds, cap for one ordinary attempt
PAGE_TIMEOUT = 60.0  # seconds, cap for one dataset page attempt
MAX_ATTEMPTS = 6  # per ordinary call; waits retry until their deadline instead
MAX_PAGE_SIZE = 250_000  # Apify's own cap on a dataset page
NOT_FOUND_GRACE_SECONDS = 30.0  # a 404 this early in a wait is replica lag, not a lost run


def _usd(value: float) -> str:
    """A dollar amount as a plain decimal, as a query parameter: ``0.00001``, not ``1e-05``."""
    return format(decimal.Decimal(repr(float(value))), "f")


def _segment(value: str) -> str:
    """A path segment; actor names ``user/actor`` become ``user~actor`` as Apify expects."""
    return urllib.parse.quote(value.replace("/", "~"), safe="~")


class ApifyClient:
    """Async client for the Apify API v2 on one shared ``httpx.AsyncClient``.

    Args:
        base_url: ``https://api.apify.com`` (a trailing ``/v2`` is accepted).
        token: sent only as ``Authorization: Bearer``; ``None`` sends no credentials.
        clock: the monotonic clock deadlines are read from.
        deadline_slack_seconds: how far past a deadline a call may run, at most.
        backoff_base_seconds, backoff_cap_seconds: jittered exponential backoff.
        transport: an httpx transport (tests pass a mock).
        default_budget_seconds: the deadline of a call that is not given one.
        long_poll_max_seconds: the largest ``waitForFinish`` we ask for (Apify allows 60).
        min_poll_interval_seconds: the least time between two status requests of one wait
            (guards against a server that answers long-polls early).
        sleep: the coroutine used to back off (tests pass a recorder).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        clock: clock.Clock = clock.SYSTEM,
        deadline_slack_seconds: float = 1.0,
        backoff_base_seconds: float = 0.5,
        backoff_cap_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        default_budget_seconds: float = 60.0,
        long_poll_max_seconds: int = MAX_WAIT_FOR_FINISH,
        min_poll_interval_seconds: float = 1.0,
        sleep: retrying.Sleep = asyncio.sleep,
    ) -> None:
        redaction.register_secret(token)
        base = base_url.rstrip("/")
        base = base.removesuffix("/v2")
        self.base_url = base
        self._clock = clock
        self._slack = deadline_slack_seconds
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._default_budget = default_budget_seconds
        self._long_poll_max = max(0, min(MAX_WAIT_FOR_FINISH, long_poll_max_seconds))
        self._min_poll_interval = min_poll_interval_seconds
        self._sleep = sleep
        self.sleep = sleep  # also how long reconciliation lets the platform settle
        self._http = _transport_module.build_http_client(base, token, transport=transport)

    def __repr__(self) -> str:
        return f"ApifyClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> ApifyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ plumbing

    def _deadline(self, deadline: clock.Deadline | None) -> clock.Deadline:
        return (
            deadline
            if deadline is not None
            else clock.Deadline.after(self._default_budget, self._clock)
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        deadline: clock.Deadline,
        parse: Callable[[_transport_module.Reply], T],
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        side_effect: bool = False,
        attempt_cap_seconds: float = REQUEST_TIMEOUT,
        max_attempts: int | None = MAX_ATTEMPTS,
        follow_redirects: bool = False,
        parse_json: bool = True,
        ids: Mapping[str, str] | None = None,
    ) -> T:
        """One logical call: attempts with backoff, all inside ``deadline`` (+ slack).

        Each attempt is one request and one span, ``apify <operation>``: its method, its
        attempt number and the ``ids`` it concerns (``apify.run_id``, ``apify.actor_id``,
        ``apify.dataset_id``), plus the run id an answer names; never the URL or the token.
        """
        if deadline.expired():
            raise errors.ApifyTimeoutError(f"{operation}: deadline passed before the request")
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            budget = min(attempt_cap_seconds, deadline.remaining() + self._slack / 2)
            with tracing.span(
                f"apify {operation}",
                {"apify.operation": operation, "http.request.method": method, **(ids or {})},
                kind=tracing.SpanKind.CLIENT,
            ) as request_span:
                tracing.annotate(request_span, {"kairo.attempt": attempts})
                reply = await _transport_module.request_json(
                    self._http,
                    method,
                    path,
                    operation=operation,
                    timeout_seconds=budget,
                    params=params,
                    json_body=json_body,
                    side_effect=side_effect,
                    follow_redirects=follow_redirects,
                    parse_json=parse_json,
                )
                result = parse(reply)
                if isinstance(result, models.RunInfo):
                    tracing.annotate(
                        request_span, {"apify.run_id": result.id, "apify.run_status": result.status}
                    )
                tracing.annotate(request_span, {"http.response.status_code": reply.status_code})
                return result

        controller = retrying.policy(
            operation=operation,
            deadline=deadline,
            backoff_base_seconds=self._backoff_base,
            backoff_cap_seconds=self._backoff_cap,
            max_attempts=max_attempts,
            sleep=self._sleep,
        )
        try:
            async with asyncio.timeout(deadline.remaining() + self._slack):
                return await controller(attempt)
        except TimeoutError as exc:
            raise errors.ApifyTimeoutError(f"{operation}: deadline passed") from exc

    # ------------------------------------------------------------------ runs

    async def start_run(
        self,
        actor_id: str,
        input: Mapping[str, Any] | None,
        *,
        timeout_secs: int | None = None,
        memory_mbytes: int | None = None,
        max_items: int | None = None,
        max_total_charge_usd: float | None = None,
        webhooks: Sequence[Mapping[str, Any]] | None = None,
        deadline: clock.Deadline | None = None,
    ) -> models.RunInfo:
        """``POST /v2/actors/{actorId}/runs`` with ``input`` as the body; the new run.

        ``max_total_charge_usd`` is sent as ``maxTotalChargeUsd``: the most the run may
        charge (Apify holds pay-per-event actors to it; None sends none).

        Retried only when the request provably never reached Apify (connect errors) or was
        rejected with 429. Any failure after the request may have reached Apify raises
        :class:`~kairo_ingest.errors.ApifyStartUnknownError`: reconcile, do not
        resend (see :func:`kairo_ingest.apify.reconcile.start_or_adopt`). Concurrency and
        memory limits raise :class:`~kairo_ingest.errors.ApifyNotNowError` (snooze).
        """
        operation = "start_run"
        params: dict[str, str | int] = {}
        if timeout_secs is not None:
            params["timeout"] = int(timeout_secs)
        if memory_mbytes is not None:
            params["memory"] = int(memory_mbytes)
        if max_items is not None:
            params["maxItems"] = int(max_items)
        if max_total_charge_usd is not None:
            params["maxTotalChargeUsd"] = _usd(max_total_charge_usd)
        if webhooks:
            encoded = json.dumps(list(webhooks), separators=(",", ":")).encode()
            params["webhooks"] = base64.b64encode(encoded).decode("ascii")

        def parse(reply: _transport_module.Reply) -> models.RunInfo:
            try:
                return models.parse_run(
                    models.unwrap_data(reply.body, operation=operation), operation=operation
                )
            except errors.ApifyTransientError as exc:
                raise errors.ApifyStartUnknownError(exc.message) from exc

        run = await self._call(
            "POST",
            f"/v2/actors/{_segment(actor_id)}/runs",
            operation=operation,
            deadline=self._deadline(deadline),
            parse=parse,
            params=params,
            json_body=dict(input) if input is not None else {},
            side_effect=True,
            ids={"apify.actor_id": actor_id},
        )
        log.info("apify_run_started", actor_id=actor_id, run_id=run.id, status=run.status)
        return run

    async def get_run(
        self, run_id: str, wait_secs: int = 0, *, deadline: clock.Deadline | None = None
    ) -> models.RunInfo:
        """``GET /v2/actor-runs/{runId}?waitForFinish=N``: the run, after at most N seconds."""
        wait_secs = max(0, min(MAX_WAIT_FOR_FINISH, int(wait_secs)))
        return await self._get_run(run_id, wait_secs, self._deadline(deadline), MAX_ATTEMPTS)

    async def _get_run(
        self, run_id: str, wait_secs: int, deadline: clock.Deadline, max_attempts: int | None
    ) -> models.RunInfo:
        operation = "get_run"
        return await self._call(
            "GET",
            f"/v2/actor-runs/{_segment(run_id)}",
            operation=operation,
            deadline=deadline,
            parse=lambda reply: models.parse_run(
                models.unwrap_data(reply.body, operation=operation), operation=operation
            ),
            params={"waitForFinish": wait_secs},
            attempt_cap_seconds=wait_secs + LONG_POLL_MARGIN,
            max_attempts=max_attempts,
            ids={"apify.run_id": run_id},
        )

    async def wait_for_run(
        self,
        run_id: str,
        deadline: clock.Deadline,
        *,
        not_found_grace_seconds: float = NOT_FOUND_GRACE_SECONDS,
    ) -> models.RunInfo:
        """Long-poll until the run is terminal; :class:`~kairo_ingest.errors.ApifyTimeoutError`
        when ``deadline`` passes first.

        Never runs past ``deadline`` by more than ``deadline_slack_seconds``. Transient
        errors (network, 5xx, 429, garbled bodies) are retried with backoff until the
        deadline. Unknown statuses are logged and treated as still running. A ``404`` in
        the first ``not_found_grace_seconds`` of the wait is replica lag after a start (the
        official client tolerates it too): asked again after a pause; later it is raised.
        """
        last_status = "unknown"
        grace_ends = self._clock.monotonic() + not_found_grace_seconds
        try:
            async with asyncio.timeout(deadline.remaining() + self._slack):
                while not deadline.expired():
                    wait_secs = min(self._long_poll_max, int(deadline.remaining()))
                    poll_started = self._clock.monotonic()
                    try:
                        run = await self._get_run(run_id, wait_secs, deadline, None)
                    except errors.ApifyNotFoundError:
                        if self._clock.monotonic() >= grace_ends:
                            raise
                        log.info("apify_run_not_visible_yet", run_id=run_id)
                        pause = min(self._min_poll_interval, deadline.remaining())
                        if pause > 0:
                            await self._sleep(pause)
                        continue
                    except errors.ApifyError as exc:
                        if retrying.is_retryable(exc) or isinstance(exc, errors.ApifyTimeoutError):
                            raise errors.ApifyTimeoutError(
                                f"wait_for_run: run {run_id} not finished before the deadline; "
                                f"last error: {exc.message}"
                            ) from exc
                        raise
                    if run.terminal:
                        return run
                    last_status = run.status
                    if not run.known_status:
                        log.warning("apify_unknown_status", run_id=run_id, status=run.status)
                    elapsed = self._clock.monotonic() - poll_started
                    pause = min(self._min_poll_interval - elapsed, deadline.remaining())
                    if pause > 0:
                        await self._sleep(pause)
        except TimeoutError as exc:
            raise errors.ApifyTimeoutError(
                f"wait_for_run: run {run_id} not finished before the deadline (still {last_status})"
            ) from exc
        raise errors.ApifyTimeoutError(
            f"wait_for_run: run {run_id} not finished before the deadline (still {last_status})"
        )

    async def wait_or_abort(
        self,
        run_id: str,
        deadline: clock.Deadline,
        *,
        gracefully: bool = False,
        abort_timeout_seconds: float = 10.0,
        not_found_grace_seconds: float = NOT_FOUND_GRACE_SECONDS,
    ) -> models.RunEnd:
        """:meth:`wait_for_run`; on the deadline, abort the run so it stops costing money.

        The abort is not graceful: a graceful abort lets the run go on (and bill) for up to
        30 s more. It is bounded by ``abort_timeout_seconds`` and best effort: a failed
        abort is logged. Then, whether the abort worked or not, a final look that waits up
        to ``abort_timeout_seconds`` for the run's end (a forced abort still passes through
        ABORTING): the final run object, with Apify's real status and cost. A run that
        succeeded at the last moment comes back SUCCEEDED and is kept, not paid for again;
        an aborted one comes back ABORTED with what it cost (its partial dataset is kept).

        Returns a :class:`~kairo_ingest.apify.models.RunEnd`: ``deadline_passed`` says we
        aborted; ``ended`` is False when the run was still going (or could not be read)
        after the final look, and the caller hands it to the run ledger.
        """
        try:
            return models.RunEnd(
                await self.wait_for_run(
                    run_id, deadline, not_found_grace_seconds=not_found_grace_seconds
                )
            )
        except errors.ApifyTimeoutError:
            aborted = await self._abort_quietly(run_id, gracefully, abort_timeout_seconds)
            looked = await self._final_look(run_id, abort_timeout_seconds)
            ended = [run for run in (looked, aborted) if run is not None and run.terminal]
            final = ended[0] if ended else (looked or aborted)
            log.info(
                "apify_run_after_deadline",
                run_id=run_id,
                status=None if final is None else final.status,
            )
            return models.RunEnd(final, deadline_passed=True)

    async def _final_look(self, run_id: str, timeout_seconds: float) -> models.RunInfo | None:
        """The run once more, waiting up to ``timeout_seconds`` for it to end; None on error."""
        wait_secs = max(0, min(MAX_WAIT_FOR_FINISH, int(timeout_seconds)))
        try:
            return await self.get_run(
                run_id,
                wait_secs,
                deadline=clock.Deadline.after(wait_secs + LONG_POLL_MARGIN, self._clock),
            )
        except errors.ApifyError as exc:
            log.warning("apify_final_look_failed", run_id=run_id, error=errors.describe(exc))
            return None

    async def _abort_quietly(
        self, run_id: str, gracefully: bool, timeout_seconds: float
    ) -> models.RunInfo | None:
        try:
            run = await self.abort_run(run_id, gracefully, timeout_seconds=timeout_seconds)
        except errors.ApifyError as exc:
            log.warning("apify_abort_failed", run_id=run_id, error=errors.describe(exc))
            return None
        log.warning("apify_abort_at_deadline", run_id=run_id, status=run.status)
        return run

    async def abort_run(
        self, run_id: str, gracefully: bool = False, *, timeout_seconds: float = 10.0
    ) -> models.RunInfo:
        """``POST /v2/actor-runs/{runId}/abort``; the run as Apify reports it (ABORTING...).

        Bounded by ``timeout_seconds``; a no-op for a run that already ended.
        """
        operation = "abort_run"
        run = await self._call(
            "POST",
            f"/v2/actor-runs/{_segment(run_id)}/abort",
            operation=operation,
            deadline=clock.Deadline.after(timeout_seconds, self._clock),
            parse=lambda reply: models.parse_run(
                models.unwrap_data(reply.body, operation=operation), operation=operation
            ),
            params={"gracefully": "true" if gracefully else "false"},
            ids={"apify.run_id": run_id},
        )
        log.info("apify_run_abort_requested", run_id=run_id, status=run.status)
        return run

    async def list_runs(
        self,
        actor_id: str,
        *,
        started_after: dt.datetime | None = None,
        started_before: dt.datetime | None = None,
        status: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        desc: bool = True,
        deadline: clock.Deadline | None = None,
    ) -> list[models.RunInfo]:
        """One page of ``GET /v2/actors/{actorId}/runs`` (Apify caps ``limit`` at 1000)."""
        params: dict[str, str | int] = {
            "limit": max(1, min(1000, limit)),
            "offset": max(0, offset),
            "desc": "true" if desc else "false",
        }
        if started_after is not None:
            params["startedAfter"] = models.format_datetime(started_after)
        if started_before is not None:
            params["startedBefore"] = models.format_datetime(started_before)
        if status is not None:
            params["status"] = status
        operation = "list_runs"
        return await self._call(
            "GET",
            f"/v2/actors/{_segment(actor_id)}/runs",
            operation=operation,
            deadline=self._deadline(deadline),
            parse=lambda reply: models.parse_run_list(reply.body, operation=operation),
            params=params,
            ids={"apify.actor_id": actor_id},
        )

    async def get_run_input(
        self, run_id: str, *, deadline: clock.Deadline | None = None
    ) -> dict[str, Any] | None:
        """The run's stored INPUT record, or ``None`` when the run or the record is missing."""
        operation = "get_run_input"
        try:
            body = await self._call(
                "GET",
                f"/v2/actor-runs/{_segment(run_id)}/key-value-store/records/INPUT",
                operation=operation,
                deadline=self._deadline(deadline),
                parse=lambda reply: reply.body,
                follow_redirects=True,  # a 302 to a signed storage URL, sent without the token
                ids={"apify.run_id": run_id},
            )
        except errors.ApifyNotFoundError:
            return None
        if not isinstance(body, dict):
            log.info("apify_input_not_an_object", run_id=run_id)
            return None
        return body

    # ------------------------------------------------------------------ datasets

    async def iter_dataset_items(
        self,
        dataset_id: str,
        *,
        limit: int | None = None,
        page_size: int = 1000,
        start_index: int = 0,
        page_deadline_seconds: float | None = None,
    ) -> AsyncIterator[tuple[int, Any]]:
        """Yield ``(absolute_index, item)`` from ``GET /v2/datasets/{id}/items``, page by page.

        ``clean=true``; the offset advances by ``max(X-Apify-Pagination-Count, len(items))``
        (with ``clean`` Apify may skip empty rows it still counts); stops at a page that
        scanned nothing or once ``limit`` items were yielded. Only one page is held.

        The index is the page's offset plus the item's position in the page: unique and
        increasing, and equal to the dataset row when ``clean`` skipped nothing, so
        ``start_index=last_index + 1`` resumes. An item is any JSON value (Apify stores
        objects, but a non-object is yielded as it is) or a
        :class:`~kairo_ingest.apify.models.UnparsableItem` when it could not be decoded
        alone (see :mod:`~kairo_ingest.apify.pages`): one bad item never costs its page.
        A body that is not one complete JSON array raises
        :class:`~kairo_ingest.errors.ApifyTransientError` once its retries are spent.
        Each page has its own deadline (``default_budget_seconds``).
        """
        operation = "iter_dataset_items"
        page_size = max(1, min(MAX_PAGE_SIZE, page_size))
        path = f"/v2/datasets/{_segment(dataset_id)}/items"
        budget = page_deadline_seconds or self._default_budget
        offset = max(0, start_index)
        yielded = 0
        while limit is None or yielded < limit:
            page_limit = page_size if limit is None else min(page_size, limit - yielded)
            page_offset = offset
            items, scanned = await self._call(
                "GET",
                path,
                operation=operation,
                deadline=clock.Deadline.after(budget, self._clock),
                parse=functools.partial(_parse_page, page_limit=page_limit, operation=operation),
                params={
                    "format": "json",
                    "clean": "true",
                    "offset": page_offset,
                    "limit": page_limit,
                },
                attempt_cap_seconds=PAGE_TIMEOUT,
                parse_json=False,
                ids={"apify.dataset_id": dataset_id},
            )
            if scanned == 0:
                return
            offset = page_offset + scanned
            for position, item in enumerate(items):
                yield page_offset + position, item
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
            del items


def _parse_page(
    reply: _transport_module.Reply, page_limit: int, *, operation: str
) -> tuple[list[Any], int]:
    """A dataset page: the items and how many rows Apify scanned for them.

    The offset then advances by ``max(X-Apify-Pagination-Count, len(items))``: with
    ``clean`` Apify counts rows it processed but did not return.
    """
    items = pages.decode_page(reply.content, operation=operation, status_code=reply.status_code)
    try:
        count = int(reply.headers.get("x-apify-pagination-count", len(items)))
    except ValueError:
        count = len(items)
    scanned = max(len(items), min(max(count, 0), page_limit))
    return items, scanned
