"""How the end of an attempt moves its job on: the rules both queue adapters apply.

Pure: no I/O, no clock. The PostgreSQL adapter applies them inside one statement
(``queue/sql.py``, built from the constants here) and the in-memory queue
(``tests/support/memory_queue.py``) calls the functions; the conformance suite
(``tests/integration/ports/``) holds the two to the same results. Why each rule:
docs/queue.md ("What an infrastructure failure costs", "Retries").

* Refunds: a snooze, a release, a give-up, a reap and a hand-back give the attempt back
  (:data:`REFUNDED`), so only a handler's own failures spend ``max_attempts``.
* Caps: releases, give-ups and reaps are *interruptions* (:data:`INTERRUPTED`); a job
  fails at its :attr:`Caps.max_interruptions`-th one (it keeps wedging its worker) and at
  its :attr:`Caps.max_snoozes`-th snooze.
* The next status (:func:`next_status`): an operator's cancel wins over everything, a
  success included; then a success; then a failure for good (the caller's, or a cap);
  then a job superseded by its brand's pending follow-up is cancelled; else pending.
"""

from __future__ import annotations

import dataclasses
import random

from kairo_ingest import errors
from kairo_ingest.domain import retry, statuses

Outcome = statuses.AttemptOutcome
Status = statuses.JobStatus

# A job that has been released, given up or reaped this many times fails: a poison job
# that hangs or kills its worker stops after ten, and a rolling deploy's releases of a
# long job stay far below it.
DEFAULT_MAX_INTERRUPTIONS = 10
# "Not now" (rate limits, Apify's concurrency and memory limits, a daily spend cap) this
# many times: at the default 60 s snooze, more than an hour and a half of refusals.
DEFAULT_MAX_SNOOZES = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Caps:
    """The caps on refunded attempts (see the module docstring)."""

    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    max_snoozes: int = DEFAULT_MAX_SNOOZES

    def values(self) -> dict[str, int]:
        return {"max_interruptions": self.max_interruptions, "max_snoozes": self.max_snoozes}


DEFAULT_CAPS = Caps()

# Endings that give the attempt back: ``attempts`` counts only attempts a handler spent.
REFUNDED = frozenset(
    {Outcome.SNOOZED, Outcome.RELEASED, Outcome.GIVEN_UP, Outcome.REAPED, Outcome.HANDED_BACK}
)
# Endings that count against the interruption cap.
INTERRUPTED = frozenset({Outcome.RELEASED, Outcome.GIVEN_UP, Outcome.REAPED})
# Endings that leave the stored error as it was when the job goes back to pending: nothing
# went wrong with the job itself.
KEEP_ERROR_WHEN_PENDING = frozenset({Outcome.RELEASED, Outcome.HANDED_BACK})

# The error kind each ending that is not the handler's own stores.
ERROR_KIND = {
    Outcome.CANCELLED: errors.ErrorKind.CANCELLED,
    Outcome.RELEASED: errors.ErrorKind.CANCELLED,
    Outcome.GIVEN_UP: errors.ErrorKind.LEASE_LOST,
    Outcome.REAPED: errors.ErrorKind.LEASE_LOST,
    Outcome.HANDED_BACK: errors.ErrorKind.LEASE_LOST,
}


def in_order(outcomes: frozenset[Outcome]) -> list[Outcome]:
    """The outcomes in their declaration order (stable SQL text, whatever the set's order)."""
    return [outcome for outcome in Outcome if outcome in outcomes]


def cancel_asked(outcome: Outcome, *, cancel_requested: bool) -> bool:
    """The attempt ends its job cancelled: the holder stopped it, or an operator asked."""
    return outcome is Outcome.CANCELLED or cancel_requested


def interruption_cap_hit(outcome: Outcome, *, interruptions: int, caps: Caps) -> bool:
    """This ending is the job's :attr:`Caps.max_interruptions`-th interruption."""
    return outcome in INTERRUPTED and interruptions + 1 >= caps.max_interruptions


def snooze_cap_hit(outcome: Outcome, *, snoozes: int, caps: Caps) -> bool:
    """This ending is the job's :attr:`Caps.max_snoozes`-th snooze."""
    return outcome is Outcome.SNOOZED and snoozes + 1 >= caps.max_snoozes


def next_status(
    outcome: Outcome,
    *,
    terminal: bool,
    cancel_requested: bool,
    interruptions: int,
    snoozes: int,
    superseded: bool,
    caps: Caps,
) -> Status:
    """The job's status after the attempt ends (the order is the module docstring's);
    ``interruptions`` and ``snoozes`` are the counts before this ending."""
    if cancel_asked(outcome, cancel_requested=cancel_requested):
        return Status.CANCELLED
    if outcome is Outcome.SUCCEEDED:
        return Status.SUCCEEDED
    if (
        terminal
        or interruption_cap_hit(outcome, interruptions=interruptions, caps=caps)
        or snooze_cap_hit(outcome, snoozes=snoozes, caps=caps)
    ):
        return Status.FAILED
    if superseded:
        return Status.CANCELLED
    return Status.PENDING


def keeps_last_error(outcome: Outcome, status: Status) -> bool:
    """The job keeps its stored last error: a success (not overruled by a cancel), or a
    release or hand-back that puts it back to pending."""
    if outcome is Outcome.SUCCEEDED:
        return status is Status.SUCCEEDED
    return outcome in KEEP_ERROR_WHEN_PENDING and status is Status.PENDING


def stored_error_kind(
    outcome: Outcome, *, cancel_requested: bool, error_kind: str | None
) -> str | None:
    """The error kind stored when the job does not keep its last one."""
    if cancel_asked(outcome, cancel_requested=cancel_requested):
        return errors.ErrorKind.CANCELLED.value
    return error_kind


@dataclasses.dataclass(frozen=True, slots=True)
class Counts:
    """A job's attempt counters: spent attempts, interruptions, snoozes."""

    attempts: int
    interruptions: int
    snoozes: int


def counts_after(outcome: Outcome, before: Counts) -> Counts:
    """The counters once the attempt ended: refunded, or counted against a cap."""
    return Counts(
        attempts=max(before.attempts - 1, 0) if outcome in REFUNDED else before.attempts,
        interruptions=before.interruptions + (1 if outcome in INTERRUPTED else 0),
        snoozes=before.snoozes + (1 if outcome is Outcome.SNOOZED else 0),
    )


def deferred(status: Status, delay_seconds: float) -> bool:
    """A job back to pending with a delay waits (deferred) until the promoter makes it ready."""
    return status is Status.PENDING and delay_seconds > 0


def reap_delay_seconds(
    interruptions: int,
    *,
    base_seconds: float,
    cap_seconds: float,
    rng: random.Random | None = None,
) -> float:
    """The backoff of a reaped job: the job formula with its floor, the ceiling doubling
    per interruption so far (``ceiling = min(cap, base * 2 ** interruptions)``)."""
    return retry.backoff_seconds(
        interruptions + 1,
        base_seconds=base_seconds,
        cap_seconds=cap_seconds,
        rng=rng,
        floor=retry.JOB_FLOOR,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """How a handler's failed attempt ends: the retry rules' action, and what the ending
    stores (outcome, delay, whether it fails the job for good, the error)."""

    action: retry.Action
    outcome: Outcome
    delay_seconds: float
    terminal: bool
    error: str
    error_kind: str


def failure(
    error: BaseException,
    *,
    attempts: int,
    max_attempts: int,
    base_seconds: float,
    cap_seconds: float,
    snooze_seconds: float,
    rng: random.Random | None = None,
) -> Failure:
    """Classify the error and apply the retry rules; an error that asks for a longer wait
    (a daily cap's window) gets it, unless the job fails for good."""
    kind, retryable, snooze = errors.classify(error)
    decision = retry.plan(
        retryable=retryable,
        snooze=snooze,
        attempts=attempts,
        max_attempts=max_attempts,
        base_seconds=base_seconds,
        cap_seconds=cap_seconds,
        snooze_seconds=snooze_seconds,
        rng=rng,
    )
    delay_seconds = decision.delay_seconds
    wait_at_least = errors.retry_after(error)
    if decision.action is not retry.Action.FAIL and wait_at_least is not None:
        delay_seconds = max(delay_seconds, wait_at_least)
    return Failure(
        action=decision.action,
        outcome=Outcome.SNOOZED if decision.action is retry.Action.SNOOZE else Outcome.FAILED,
        delay_seconds=delay_seconds,
        terminal=decision.action is retry.Action.FAIL,
        error=errors.describe(error),
        error_kind=kind.value,
    )
