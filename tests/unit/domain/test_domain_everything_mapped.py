"""Nothing unmapped, in the manner of httpx's ``test_httpcore_all_exceptions_mapped``.

* every :class:`~kairo_ingest.errors.ErrorKind` is produced by a class of the error tree
  or by a named explicit producer;
* every class of the error tree has a spelled-out retry action, and
  :func:`kairo_ingest.domain.retry.decide` gives exactly that action;
* every status of :class:`~kairo_ingest.domain.statuses.RunStatus` is classified
  (terminal or not, abortable or not) as the Apify API reference says
  (``shared/reference/apify-api.md``), and Apify's own statuses are exactly the official
  client's ``ActorJobStatus``.

Adding an error class, a kind or a status without deciding what it means fails here.
SQLSTATEs are covered the same way in ``tests/unit/db/test_dberrors_mapping.py``.
"""

from __future__ import annotations

import inspect
import typing

import httpx
import pytest
from apify_client import _models

from kairo_ingest import errors
from kairo_ingest.apify import mapping
from kairo_ingest.apify import models as apify_models
from kairo_ingest.domain import retry, statuses
from kairo_ingest.queue import jobs as queue_jobs

Action = retry.Action

# The retry action of each class of the error tree, decided here, not read from the code.
EXPECTED_ACTION: dict[type[errors.KairoError], Action] = {
    errors.KairoError: Action.FAIL,
    errors.ConfigError: Action.FAIL,
    errors.UsageError: Action.FAIL,
    errors.DatabaseError: Action.FAIL,
    errors.DatabaseUnavailableError: Action.RETRY,
    errors.DatabaseValueError: Action.FAIL,
    errors.DatabaseConstraintError: Action.FAIL,
    errors.SchemaNotAtHeadError: Action.FAIL,
    errors.LeaseLostError: Action.FAIL,
    errors.JobError: Action.FAIL,
    errors.HandlerError: Action.RETRY,
    errors.BudgetExceededError: Action.SNOOZE,
    errors.NormalizationError: Action.FAIL,
    errors.ApifyError: Action.FAIL,
    errors.ApifyTransientError: Action.RETRY,
    errors.ApifyStartUnknownError: Action.RETRY,
    errors.ApifyNotNowError: Action.SNOOZE,
    errors.ApifyAuthError: Action.FAIL,
    errors.ApifyBillingError: Action.FAIL,
    errors.ApifyNotFoundError: Action.FAIL,
    errors.ApifyInvalidInputError: Action.FAIL,
    errors.ApifyRunFailedError: Action.RETRY,
    errors.ApifyTimeoutError: Action.RETRY,
}


def _tree(root: type[errors.KairoError]) -> set[type[errors.KairoError]]:
    found = {root}
    for sub in root.__subclasses__():
        found |= _tree(sub)
    return found


def _rate_limited() -> errors.KairoError:
    request = httpx.Request("GET", "https://api.apify.test/v2/actor-runs/r")
    return mapping.error_for_response(httpx.Response(429, request=request), operation="get_run")


def _cancelled_is_written_by_the_queue() -> bool:
    """An operator cancel is not an exception: the queue stores the kind itself."""
    return "ErrorKind.CANCELLED.value" in inspect.getsource(queue_jobs.cancel)


def test_the_error_tree_is_exactly_the_classes_mapped_here() -> None:
    assert _tree(errors.KairoError) == set(EXPECTED_ACTION)


@pytest.mark.parametrize("cls", sorted(EXPECTED_ACTION, key=lambda c: c.__name__))
def test_every_error_class_maps_to_its_retry_action(cls: type[errors.KairoError]) -> None:
    exc = cls("x")
    kind, retryable, snooze = errors.classify(exc)
    assert kind is cls.kind
    first = retry.decide(retryable=retryable, snooze=snooze, attempts=1, max_attempts=3)
    assert first is EXPECTED_ACTION[cls]
    last = retry.decide(retryable=retryable, snooze=snooze, attempts=3, max_attempts=3)
    # Attempts run out for a retry; a snooze does not spend one; a failure stays one.
    assert last is (Action.FAIL if first is Action.RETRY else first)


def test_an_exception_outside_the_tree_is_internal_and_retried() -> None:
    kind, retryable, snooze = errors.classify(KeyError("x"))
    assert kind is errors.ErrorKind.INTERNAL
    assert retry.decide(retryable=retryable, snooze=snooze, attempts=1, max_attempts=3) is (
        Action.RETRY
    )


def test_every_error_kind_has_a_producer() -> None:
    by_class = {cls.kind for cls in EXPECTED_ACTION}
    explicit = {errors.ErrorKind.RATE_LIMITED, errors.ErrorKind.CANCELLED}
    assert set(errors.ErrorKind) == by_class | explicit
    limited = _rate_limited()
    assert limited.kind is errors.ErrorKind.RATE_LIMITED
    assert retry.decide(
        retryable=limited.retryable, snooze=limited.snooze, attempts=3, max_attempts=3
    ) is (Action.SNOOZE)
    assert _cancelled_is_written_by_the_queue()


# shared/reference/apify-api.md: "READY initial; RUNNING, TIMING-OUT, ABORTING transitional;
# SUCCEEDED, FAILED, TIMED-OUT, ABORTED terminal. Abortable: READY, RUNNING, TIMING-OUT."
APIFY_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"}
APIFY_ABORTABLE = {"READY", "RUNNING", "TIMING-OUT"}
APIFY_STATUSES = {"READY", "RUNNING", "TIMING-OUT", "ABORTING"} | APIFY_TERMINAL
OUR_INTENT_STATES = {"STARTING", "START_FAILED"}


def test_apify_statuses_are_the_official_clients() -> None:
    (literal, _str) = typing.get_args(_models.ActorJobStatus)
    assert set(typing.get_args(literal)) == APIFY_STATUSES
    assert {s.value for s in statuses.RunStatus} == APIFY_STATUSES | OUR_INTENT_STATES


@pytest.mark.parametrize("status", sorted(statuses.RunStatus, key=str))
def test_every_run_status_is_classified_as_the_api_says(status: statuses.RunStatus) -> None:
    value = status.value
    assert statuses.is_terminal(value) is (value in APIFY_TERMINAL)
    assert (value in statuses.APIFY_ABORTABLE) is (value in APIFY_ABORTABLE)
    assert not (statuses.is_terminal(value) and value in statuses.APIFY_ABORTABLE)
    run = apify_models.parse_run({"id": "r", "status": value}, operation="test")
    assert run.terminal is (value in APIFY_TERMINAL)
    assert run.known_status is (value in APIFY_STATUSES)
    assert run.succeeded is (value == "SUCCEEDED")


def test_the_module_sets_hold_nothing_else() -> None:
    assert set(statuses.APIFY_TERMINAL) == APIFY_TERMINAL
    assert set(statuses.APIFY_ABORTABLE) == APIFY_ABORTABLE
