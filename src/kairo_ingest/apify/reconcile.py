"""Starting an Apify run without risking a duplicate.

Apify has no idempotency key for starting a run. When a start request fails after it may
have reached Apify (a dropped connection, a timeout, a 5xx), the run may exist. Sending the
start again could pay for the same scrape twice; giving up could leave a run nobody reads.
So we *reconcile*: list the actor's runs started since the intent was recorded (minus a
clock slack, since Apify's clock is not ours), read each one's INPUT record, and adopt the
run whose input equals ours. Only when none matches is a new run started.

The pipeline records an intent (its timestamp and the exact input) before starting, then:

- for a fresh intent: :func:`start_or_adopt`;
- for an intent left in STARTING by a crash: :func:`adopt_existing`, and
  ``client.start_run`` only if that returns ``None``.

Two intents with the same actor and the same input cannot be told apart by Apify's data:
pass the run ids already bound to other intents as ``exclude_run_ids``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Collection, Mapping
from typing import Any

import structlog

from kairo_ingest import errors
from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import models

log = structlog.get_logger(__name__)

DEFAULT_CLOCK_SLACK = dt.timedelta(seconds=60)
MAX_CANDIDATES = 2000  # runs inspected at most: 2 pages of Apify's list
PAGE_LIMIT = 1000
READ_CONCURRENCY = 8  # INPUT records read at once while reconciling


def canonical_input(run_input: Mapping[str, Any] | None) -> Any:
    """The input as Apify stores it: our mapping after a JSON round trip (tuples -> lists)."""
    return json.loads(json.dumps(dict(run_input) if run_input is not None else {}))


async def adopt_existing(
    client: apify_client.ApifyClient,
    actor_id: str,
    run_input: Mapping[str, Any] | None,
    intent_at: dt.datetime,
    *,
    clock_slack: dt.timedelta = DEFAULT_CLOCK_SLACK,
    exclude_run_ids: Collection[str] = (),
) -> models.RunInfo | None:
    """The run of ``actor_id`` started since ``intent_at - clock_slack`` whose INPUT equals
    ``run_input``, or ``None``.

    Runs are inspected newest first (a lost start is among the latest runs), their INPUT
    records read ``READ_CONCURRENCY`` at a time; the first match is adopted and fetched
    afresh so the caller gets its full record. Errors from listing or reading are typed
    Apify errors and propagate (the intent stays STARTING and is retried later).
    """
    expected = canonical_input(run_input)
    since = intent_at - clock_slack
    inspected = 0
    offset = 0
    while inspected < MAX_CANDIDATES:
        page = await client.list_runs(
            actor_id, started_after=since, limit=PAGE_LIMIT, offset=offset, desc=True
        )
        candidates = [run for run in page if run.id not in exclude_run_ids]
        for start in range(0, len(candidates), READ_CONCURRENCY):
            chunk = candidates[start : start + READ_CONCURRENCY]
            inputs = await asyncio.gather(
                *(client.get_run_input(run.id) for run in chunk), return_exceptions=True
            )
            inspected += len(chunk)
            for outcome in inputs:
                if isinstance(outcome, BaseException):
                    raise outcome
            for run, stored in zip(chunk, inputs, strict=True):
                if stored == expected:
                    adopted = await client.get_run(run.id)
                    log.info(
                        "apify.run_adopted",
                        actor_id=actor_id,
                        run_id=adopted.id,
                        status=adopted.status,
                        inspected=inspected,
                    )
                    return adopted
        if len(page) < PAGE_LIMIT:
            break
        offset += len(page)
    log.info("apify.reconcile_no_match", actor_id=actor_id, inspected=inspected)
    return None


async def start_or_adopt(
    client: apify_client.ApifyClient,
    actor_id: str,
    run_input: Mapping[str, Any] | None,
    *,
    intent_at: dt.datetime,
    clock_slack: dt.timedelta = DEFAULT_CLOCK_SLACK,
    exclude_run_ids: Collection[str] = (),
    max_starts: int = 3,
    **start_kwargs: Any,
) -> models.RunInfo:
    """Start a run for a fresh intent; if the start's outcome is unknown, reconcile.

    Tries ``client.start_run(actor_id, run_input, **start_kwargs)``. On
    :class:`~kairo_ingest.errors.ApifyStartUnknownError` it calls
    :func:`adopt_existing` and returns the matching run; when none matches, the start
    provably did not create a run, and it starts again, up to ``max_starts`` sends in all.
    Then the last :class:`~kairo_ingest.errors.ApifyStartUnknownError` is raised
    (retryable: the intent stays STARTING and is resumed with :func:`adopt_existing`).

    Every other error of ``start_run`` propagates unchanged: 429s were already retried,
    ``ApifyNotNowError`` means snooze, auth and invalid input are permanent.
    """
    last_error: errors.ApifyStartUnknownError | None = None
    for attempt in range(1, max(1, max_starts) + 1):
        try:
            return await client.start_run(actor_id, run_input, **start_kwargs)
        except errors.ApifyStartUnknownError as exc:
            last_error = exc
            log.warning(
                "apify.start_outcome_unknown",
                actor_id=actor_id,
                attempt=attempt,
                error=exc.message,
            )
        adopted = await adopt_existing(
            client,
            actor_id,
            run_input,
            intent_at,
            clock_slack=clock_slack,
            exclude_run_ids=exclude_run_ids,
        )
        if adopted is not None:
            return adopted
    assert last_error is not None
    raise last_error
