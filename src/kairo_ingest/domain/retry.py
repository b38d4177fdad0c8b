"""Retry rules: what to do with a failed attempt, and how long to wait before the next one.

Pure: no I/O, no clock. The queue turns a :class:`Decision` into a row update whose
``available_at`` is the database's ``now()`` plus :attr:`Decision.delay_seconds`.

* A permanent error fails the job at once, whatever the attempts.
* A "not now" error (rate limit, Apify concurrency or memory limit) snoozes the job
  for a fixed time without spending the attempt.
* A retryable error waits ``uniform(floor * ceiling, ceiling)`` with
  ``ceiling = min(cap, base * 2 ** (attempt - 1))``: the first retry waits at most
  ``base``, never ``2 * base``; the ceiling doubles per attempt and stops at ``cap``; the
  jitter spreads a burst of failures so the retries do not arrive together, and the
  floor (:data:`JOB_FLOOR`, half the ceiling) keeps the retries of one job from all
  drawing a near-zero wait, so the attempts cover a known stretch of time
  (:func:`least_retry_window_seconds`).
* Once ``attempts`` reaches ``max_attempts`` the job fails.
"""

from __future__ import annotations

import dataclasses
import enum
import random

# Beyond this exponent the ceiling is far above any sensible cap; capping the exponent
# keeps the arithmetic finite (the reaper's SQL uses the same bound).
MAX_EXPONENT = 60


class Action(enum.StrEnum):
    RETRY = "retry"  # back to pending after a backoff; the attempt is spent
    SNOOZE = "snooze"  # back to pending after snooze_seconds; the attempt is refunded
    FAIL = "fail"  # terminal: status failed, last_error kept


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """An :class:`Action` and, for RETRY and SNOOZE, how long the job waits (seconds)."""

    action: Action
    delay_seconds: float = 0.0


def ceiling_seconds(attempt: int, base: float, cap: float) -> float:
    """The largest backoff after attempt ``attempt`` (1-based): ``min(cap, base * 2**(attempt-1))``.

    Attempts below 1 count as 1; the exponent stops at :data:`MAX_EXPONENT`.
    """
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    exponent = min(max(attempt, 1) - 1, MAX_EXPONENT)
    return min(cap, base * 2.0**exponent)


def backoff_seconds(
    attempt: int,
    *,
    base_seconds: float,
    cap_seconds: float,
    rng: random.Random | None = None,
    floor: float = 0.0,
) -> float:
    """The one backoff formula: uniform over ``[floor * ceiling, ceiling]`` (seconds), with
    ``ceiling = min(cap, base * 2**(attempt-1))``.

    ``floor=0`` is "full jitter" (job retries: a burst of failures spreads out the most);
    ``floor=0.5`` keeps at least half the ceiling (loops that retry a failed database
    write or reconnect: never a hot loop, still spread out). A ``[D, 2D]`` wait with
    ``D = base * 2**(attempt-1)`` is ``base_seconds=2*base, floor=0.5``.
    """
    if not 0.0 <= floor <= 1.0:
        raise ValueError("floor must be within [0, 1]")
    ceiling = ceiling_seconds(attempt, base_seconds, cap_seconds)
    return (rng or random).uniform(floor * ceiling, ceiling)


# Job retries keep at least half the ceiling: ten attempts at the default 15 s base and
# 15 min cap then wait at least 30 minutes in all (docs/queue.md, "Retries"), so an outage that
# long costs a job nothing but time.
JOB_FLOOR = 0.5
DEFAULT_MAX_ATTEMPTS = 10


def least_retry_window_seconds(
    max_attempts: int, *, base_seconds: float, cap_seconds: float, floor: float = JOB_FLOOR
) -> float:
    """The shortest total backoff a job can wait between its first attempt and its last:
    the sum of ``floor * ceiling`` over the retries after attempts 1 .. max_attempts-1."""
    return sum(
        floor * ceiling_seconds(attempt, base_seconds, cap_seconds)
        for attempt in range(1, max_attempts)
    )


# The worker's retries of its own database statements (claims, final writes, heartbeats,
# maintenance, releases) and of the LISTEN connection: 0.1 s doubling to 5 s, at least half.
LOOP_BASE_SECONDS = 0.1
LOOP_CAP_SECONDS = 5.0
LOOP_FLOOR = 0.5


def retry_delay_seconds(
    failures: int,
    rng: random.Random | None = None,
    *,
    base_seconds: float = LOOP_BASE_SECONDS,
    cap_seconds: float = LOOP_CAP_SECONDS,
) -> float:
    """Seconds before a worker loop retries after ``failures`` failures in a row."""
    return backoff_seconds(
        failures, base_seconds=base_seconds, cap_seconds=cap_seconds, rng=rng, floor=LOOP_FLOOR
    )


def decide(*, retryable: bool, snooze: bool, attempts: int, max_attempts: int) -> Action:
    """What to do after attempt number ``attempts`` failed.

    ``snooze`` wins over the attempt count because a snoozed attempt is not spent; a
    permanent error (``retryable=False``) fails at once.
    """
    if not retryable:
        return Action.FAIL
    if snooze:
        return Action.SNOOZE
    if attempts < max_attempts:
        return Action.RETRY
    return Action.FAIL


def plan(
    *,
    retryable: bool,
    snooze: bool,
    attempts: int,
    max_attempts: int,
    base_seconds: float,
    cap_seconds: float,
    snooze_seconds: float,
    rng: random.Random | None = None,
    floor: float = JOB_FLOOR,
) -> Decision:
    """:func:`decide`, plus the delay the job waits before it is ready again."""
    action = decide(
        retryable=retryable, snooze=snooze, attempts=attempts, max_attempts=max_attempts
    )
    if action is Action.RETRY:
        delay = backoff_seconds(
            attempts, base_seconds=base_seconds, cap_seconds=cap_seconds, rng=rng, floor=floor
        )
        return Decision(action, delay)
    if action is Action.SNOOZE:
        return Decision(action, snooze_seconds)
    return Decision(action)
