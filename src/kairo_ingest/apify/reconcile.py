"""Starting an Apify run without risking a duplicate.

Apify has no idempotency key for starting a run. When a start request fails after it may
have reached Apify (a dropped connection, a timeout, a 5xx), the run may exist. Sending the
start again could pay for the same scrape twice; giving up could leave a run nobody reads.
So we *reconcile*: list the actor's runs started around the intent, read each one's INPUT
record, and adopt the run whose input holds ours. Only when none does, after the platform
had time to settle, is the start sent again, and at most once.

The pipeline records an intent (its timestamp and the exact input) before starting, and
commits the time of each send (``sent_at``, through ``before_send``) before the request
goes out, then:

- for a fresh intent: :func:`start_or_adopt`;
- for an intent left in STARTING by a crash after a send: :func:`adopt_settled`, with
  what is left of the settle period after the last send (the budget wait before a send
  does not count), and :func:`start_or_adopt` only if that returns ``None``; an intent
  never sent starts at once. The run ledger does the same, one look per round, for the
  intents no job follows (``pipeline/ledger.py``).

Why each choice is safe:

- **Containment, not equality.** Apify fills the actor's input-schema defaults into the
  stored INPUT, so it is a superset of what we sent. A run matches when the stored input
  holds every field we sent with an equal value (JSON-equal: ``1`` is not ``true``); the
  extra fields are defaults. Our inputs always carry the source (a profile, a URL), so a
  run of another source never contains ours.
- **A bounded window.** ``startedAfter = intent_at - clock_slack`` and ``startedBefore =
  now + clock_slack``: no run of ours can have started before the intent was recorded,
  nor after this listing. ``clock_slack`` (60 s) covers the skew between our database
  clock, this host's clock and Apify's. Runs are read oldest first, so the run of the
  intent's first start is among the first candidates even on an actor that started
  thousands of runs since; at most ``MAX_CANDIDATES`` are inspected.
- **Letting the platform settle.** A new run can be missing from the list (replica lag),
  and a start whose answer was lost can create its run seconds later. After an unknown
  start, or when resuming an intent, the list is read again after each of
  ``SETTLE_DELAYS_SECONDS`` (about 30 s in all) before we conclude that no run exists.
- **One re-send.** :func:`start_or_adopt` sends at most ``max_starts`` (2) starts: the
  first and one re-send. Then the start stays unknown
  (:class:`~kairo_ingest.errors.ApifyStartUnknownError`: the intent stays STARTING) and
  a later attempt reconciles again, settled, before it may send.
- **Errors keep the outcome unknown.** Any error while reconciling (a 5xx, a timeout, a
  401 on the list) is raised as :class:`~kairo_ingest.errors.ApifyStartUnknownError`:
  a run may exist, so the intent must stay STARTING and never become START_FAILED. Only
  a definite refusal of the start request itself (:func:`is_definite_refusal`) proves
  that no run was created.

What is still possible:

- Two intents with the same actor and identical inputs in one window cannot be told
  apart by Apify's data; each may adopt the other's run. The pipeline passes the run ids
  already bound to other intents as ``exclude_run_ids`` and the database refuses to bind
  one run twice, so neither run is lost, but which intent gets which is arbitrary.
- A run created later than the whole settle period (a platform outage longer than
  ~30 s between accepting a start and listing its run) is not seen in time, and the one
  re-send may start a second run. Each later resume of the intent settles again first.
- An intent resumed after more than ``MAX_CANDIDATES`` newer runs of the same actor,
  whose run was started by a resume (not by its first start), can be missed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

from kairo_ingest import errors, logs
from kairo_ingest.apify import models, ports, retrying

log = logs.get(__name__)

DEFAULT_CLOCK_SLACK = dt.timedelta(seconds=60)
MAX_CANDIDATES = 2000  # runs inspected at most: 2 pages of Apify's list
PAGE_LIMIT = 1000
READ_CONCURRENCY = 8  # INPUT records read at once while reconciling
# Pauses before each further look at the list once a first look found nothing: ~30 s.
SETTLE_DELAYS_SECONDS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0)

Now = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def settle_left(
    elapsed_seconds: float, delays: Sequence[float] = SETTLE_DELAYS_SECONDS
) -> list[float]:
    """The part of a settle schedule still ahead ``elapsed_seconds`` after its start.

    A resumed intent recorded long ago needs no settling: the platform had that time.
    """
    left: list[float] = []
    reached = 0.0
    for delay in delays:
        reached += delay
        if reached > elapsed_seconds:
            left.append(min(delay, reached - max(0.0, elapsed_seconds)))
    return left


def canonical_input(run_input: Mapping[str, Any] | None) -> Any:
    """The input as Apify stores it: our mapping after a JSON round trip (tuples -> lists)."""
    return json.loads(json.dumps(dict(run_input) if run_input is not None else {}))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def input_matches(stored: object, sent: Mapping[str, Any]) -> bool:
    """True when ``stored`` holds every field of ``sent`` with a JSON-equal value."""
    if not isinstance(stored, Mapping):
        return False
    return all(key in stored and _json(stored[key]) == _json(value) for key, value in sent.items())


def is_definite_refusal(exc: errors.ApifyError) -> bool:
    """True when Apify answered the start request itself with a classified 4xx.

    Only then is it certain that no run was created. Everything else (an unknown start, an
    error while reconciling, a request that never got an answer) keeps the intent STARTING.
    """
    if isinstance(exc, errors.ApifyStartUnknownError):
        return False
    return exc.status_code is not None and 400 <= exc.status_code < 500


def _unknown(exc: errors.ApifyError) -> errors.ApifyStartUnknownError:
    if isinstance(exc, errors.ApifyStartUnknownError):
        return exc
    return errors.ApifyStartUnknownError(
        f"reconcile: {exc.message}", status_code=exc.status_code, apify_type=exc.apify_type
    )


async def adopt_existing(
    client: ports.ApifyRuns,
    actor_id: str,
    run_input: Mapping[str, Any] | None,
    intent_at: dt.datetime,
    *,
    clock_slack: dt.timedelta = DEFAULT_CLOCK_SLACK,
    exclude_run_ids: Collection[str] = (),
    now: Now = _utcnow,
    seen_inputs: dict[str, Any] | None = None,
) -> models.RunInfo | None:
    """One look: the run of ``actor_id`` in the intent's window whose INPUT holds
    ``run_input``, or ``None``.

    Runs are inspected oldest first, their INPUT records read ``READ_CONCURRENCY`` at a
    time (``seen_inputs`` caches them across looks); the first match is adopted and fetched
    afresh so the caller gets its full record. Any Apify error is raised as
    :class:`~kairo_ingest.errors.ApifyStartUnknownError` (the intent stays STARTING).
    """
    try:
        return await _adopt_once(
            client,
            actor_id,
            canonical_input(run_input),
            since=intent_at - clock_slack,
            until=now() + clock_slack,
            exclude_run_ids=exclude_run_ids,
            seen_inputs=seen_inputs if seen_inputs is not None else {},
        )
    except errors.ApifyError as exc:
        raise _unknown(exc) from exc


async def _adopt_once(
    client: ports.ApifyRuns,
    actor_id: str,
    expected: Mapping[str, Any],
    *,
    since: dt.datetime,
    until: dt.datetime,
    exclude_run_ids: Collection[str],
    seen_inputs: dict[str, Any],
) -> models.RunInfo | None:
    inspected = 0
    offset = 0
    while inspected < MAX_CANDIDATES:
        page = await client.list_runs(
            actor_id,
            started_after=since,
            started_before=until,
            limit=PAGE_LIMIT,
            offset=offset,
            desc=False,
        )
        candidates = [run for run in page if run.id not in exclude_run_ids]
        for start in range(0, len(candidates), READ_CONCURRENCY):
            chunk = candidates[start : start + READ_CONCURRENCY]
            unread = [run.id for run in chunk if run.id not in seen_inputs]
            outcomes = await asyncio.gather(
                *(client.get_run_input(run_id) for run_id in unread), return_exceptions=True
            )
            inspected += len(chunk)
            for run_id, outcome in zip(unread, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    raise outcome
                if outcome is not None:  # a record not visible yet is read again next look
                    seen_inputs[run_id] = outcome
            for run in chunk:
                if input_matches(seen_inputs.get(run.id), expected):
                    adopted = await client.get_run(run.id)
                    log.info(
                        "apify_run_adopted",
                        actor_id=actor_id,
                        run_id=adopted.id,
                        status=adopted.status,
                        inspected=inspected,
                    )
                    return adopted
        if len(page) < PAGE_LIMIT:
            break
        offset += len(page)
    log.info("apify_reconcile_no_match", actor_id=actor_id, inspected=inspected)
    return None


async def adopt_settled(
    client: ports.ApifyRuns,
    actor_id: str,
    run_input: Mapping[str, Any] | None,
    intent_at: dt.datetime,
    *,
    clock_slack: dt.timedelta = DEFAULT_CLOCK_SLACK,
    exclude_run_ids: Collection[str] = (),
    settle_delays_seconds: Sequence[float] = SETTLE_DELAYS_SECONDS,
    sleep: retrying.Sleep | None = None,
    now: Now = _utcnow,
) -> models.RunInfo | None:
    """:func:`adopt_existing`, looked at again after each of ``settle_delays_seconds``.

    ``None`` only when no look found the run: the platform had time to show a run that
    was created late or listed late. ``sleep`` defaults to the client's.
    """
    pause = sleep if sleep is not None else client.sleep
    seen: dict[str, Any] = {}
    delays = [0.0, *settle_delays_seconds]
    for look, delay in enumerate(delays, start=1):
        if delay > 0:
            await pause(delay)
        adopted = await adopt_existing(
            client,
            actor_id,
            run_input,
            intent_at,
            clock_slack=clock_slack,
            exclude_run_ids=exclude_run_ids,
            now=now,
            seen_inputs=seen,
        )
        if adopted is not None:
            return adopted
        log.info("apify_reconcile_settling", actor_id=actor_id, look=look, of=len(delays))
    return None


async def start_or_adopt(
    client: ports.ApifyRuns,
    actor_id: str,
    run_input: Mapping[str, Any] | None,
    *,
    intent_at: dt.datetime,
    clock_slack: dt.timedelta = DEFAULT_CLOCK_SLACK,
    exclude_run_ids: Collection[str] = (),
    max_starts: int = 2,
    settle_delays_seconds: Sequence[float] = SETTLE_DELAYS_SECONDS,
    sleep: retrying.Sleep | None = None,
    now: Now = _utcnow,
    before_send: Callable[[], Awaitable[None]] | None = None,
    **start_kwargs: Any,
) -> models.RunInfo:
    """Start a run for an intent; if the start's outcome is unknown, reconcile (settled).

    Tries ``client.start_run(actor_id, run_input, **start_kwargs)``. On
    :class:`~kairo_ingest.errors.ApifyStartUnknownError` it calls :func:`adopt_settled`
    and returns the matching run; when none shows up, it starts again, up to
    ``max_starts`` sends in all (the first and one re-send by default). Then the last
    :class:`~kairo_ingest.errors.ApifyStartUnknownError` is raised (retryable: the intent
    stays STARTING and is resumed with :func:`adopt_settled`).

    Every other error of the first ``start_run`` propagates unchanged: 429s were already
    retried, ``ApifyNotNowError`` means snooze, auth, billing and invalid input are
    permanent. An error of the re-send is raised as an unknown start: the first send's
    run may still exist.

    ``before_send`` is awaited before each send (the pipeline commits the intent's
    ``sent_at`` there, so settling is measured from the last send); if it raises, nothing
    is sent.
    """
    last_error: errors.ApifyStartUnknownError | None = None
    for attempt in range(1, max(1, max_starts) + 1):
        if before_send is not None:
            await before_send()
        try:
            return await client.start_run(actor_id, run_input, **start_kwargs)
        except errors.ApifyStartUnknownError as exc:
            last_error = exc
            log.warning(
                "apify_start_outcome_unknown",
                actor_id=actor_id,
                attempt=attempt,
                error=exc.message,
            )
        except errors.ApifyError as exc:
            if last_error is not None:
                raise _unknown(exc) from exc  # the first send's outcome is still unknown
            raise
        adopted = await adopt_settled(
            client,
            actor_id,
            run_input,
            intent_at,
            clock_slack=clock_slack,
            exclude_run_ids=exclude_run_ids,
            settle_delays_seconds=settle_delays_seconds,
            sleep=sleep,
            now=now,
        )
        if adopted is not None:
            return adopted
    assert last_error is not None
    raise last_error
