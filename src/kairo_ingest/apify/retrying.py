"""The retry policy: which errors are retried, how long to back off, when to give up.

Backoff follows Apify's advice for 429s, applied to every retryable error: the n-th
retry waits a random time in ``[D, 2D]`` with ``D = base * 2**(n-1)``, never more than
``cap``. A retry is attempted only when the sleep plus a minimal attempt still fits before
the caller's deadline: the policy gives up early rather than overshoot.

Retried: :class:`~kairo_ingest.errors.ApifyTransientError` (except
:class:`~kairo_ingest.errors.ApifyStartUnknownError`, which needs reconciling) and
the 429 flavour of :class:`~kairo_ingest.errors.ApifyNotNowError`. Everything else is
raised at once. The last error is re-raised as is when the policy gives up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import tenacity

from kairo_ingest import clock, errors, logs
from kairo_ingest.domain import retry as retry_rules

log = logs.get(__name__)

MIN_ATTEMPT_SECONDS = 0.05  # an attempt with less time than this left is not worth sending

Sleep = Callable[[float], Awaitable[None]]

_jitter = random.Random()  # jitter only: one generator for every call


def is_retryable(exc: BaseException) -> bool:
    """True for errors worth asking again right away (after a backoff)."""
    if isinstance(exc, errors.ApifyStartUnknownError):
        return False
    if isinstance(exc, errors.ApifyNotNowError):
        return exc.kind is errors.ErrorKind.RATE_LIMITED
    return isinstance(exc, errors.ApifyTransientError)


class JitteredBackoff(tenacity.wait.wait_base):
    """Apify's advice (a random wait in ``[D, 2D]``, ``D = base * 2**(attempt-1)``), capped
    at ``cap`` seconds: the one backoff formula of :mod:`kairo_ingest.domain.retry` with
    its ceiling at ``2D`` and its floor at half of it."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng or _jitter

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return retry_rules.backoff_seconds(
            retry_state.attempt_number,
            base_seconds=2 * self.base,
            cap_seconds=self.cap,
            rng=self._rng,
            floor=0.5,
        )


class StopBeforeDeadline(tenacity.stop.stop_base):
    """Give up when the next sleep plus a minimal attempt would not fit before the deadline."""

    def __init__(self, deadline: clock.Deadline, max_attempts: int | None = None) -> None:
        self.deadline = deadline
        self.max_attempts = max_attempts

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if self.max_attempts is not None and retry_state.attempt_number >= self.max_attempts:
            return True
        return self.deadline.remaining() < retry_state.upcoming_sleep + MIN_ATTEMPT_SECONDS


def _log_retry(operation: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        log.warning(
            "apify_retry",
            operation=operation,
            attempt=retry_state.attempt_number,
            sleep_seconds=round(retry_state.upcoming_sleep, 3),
            error_kind=errors.classify(exc)[0].value if exc else None,
            status_code=getattr(exc, "status_code", None),
            error=errors.describe(exc) if exc else None,
        )

    return before_sleep


def policy(
    *,
    operation: str,
    deadline: clock.Deadline,
    backoff_base_seconds: float,
    backoff_cap_seconds: float,
    max_attempts: int | None = None,
    sleep: Sleep = asyncio.sleep,
) -> tenacity.AsyncRetrying:
    """A fresh tenacity controller for one logical call."""
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(is_retryable),
        wait=JitteredBackoff(backoff_base_seconds, backoff_cap_seconds),
        stop=StopBeforeDeadline(deadline, max_attempts),
        sleep=sleep,
        before_sleep=_log_retry(operation),
        reraise=True,
    )
