"""Translating what happened on the wire into the typed errors of :mod:`kairo_ingest.errors`.

A non-2xx answer is classified by Apify's ``error.type`` first, then by its status: the
platform's reports disagree on the status of some types (``concurrent-runs-limit-exceeded``
has been seen as 400, 402 and 403), while the type is stable.

=================================================  ==================================  =========
What happened                                      Error                               Retried
=================================================  ==================================  =========
connect error / connect or pool timeout            ApifyTransientError (not sent)      yes
read/write error, read timeout, dropped connection ApifyTransientError                 yes
type ``rate-limit-exceeded``, or status 429        ApifyNotNowError(RATE_LIMITED)      yes
type in ``NOT_NOW_TYPES`` (any status)             ApifyNotNowError(NOT_NOW)           no: snooze
type in ``BILLING_TYPES``; unknown type with 402   ApifyBillingError                   no
type in ``PERMISSION_TYPES``; unknown with 401/403 ApifyAuthError                      no
type in ``NOT_FOUND_TYPES``; unknown with 404      ApifyNotFoundError                  no
5xx, 408                                           ApifyTransientError                 yes
2xx with a non-JSON, truncated or malformed body   ApifyTransientError                 yes
other 4xx                                          ApifyInvalidInputError              no
=================================================  ==================================  =========

Permanent refusals name Apify's type in their message (``HTTP 402
not-enough-usage-to-run-paid-actor: ...``), so the stored error says what to fix.

A request with a side effect (starting a run) that failed after it may have reached Apify
raises :class:`~kairo_ingest.errors.ApifyStartUnknownError` instead of
:class:`~kairo_ingest.errors.ApifyTransientError`: nobody
knows whether the run exists, so it must not be sent again blindly. The caller reconciles
(:mod:`kairo_ingest.apify.reconcile`).

Messages hold the operation, the HTTP status, Apify's error type and at most a short,
redacted excerpt of the body; never the token or the whole body.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from kairo_ingest import errors

BODY_EXCERPT_CHARS = 200
# Apify error types (each one is in apify_client._literals.ErrorType; a unit test checks).
RATE_LIMIT_TYPES = frozenset({"rate-limit-exceeded"})
NOT_NOW_TYPES = frozenset({"concurrent-runs-limit-exceeded", "actor-memory-limit-exceeded"})
BILLING_TYPES = frozenset(
    {
        "not-enough-usage-to-run-paid-actor",
        "x402-payment-required",
        "apify-plan-required-to-use-paid-actor",
        "monthly-usage-limit-too-low",
        "missing-billing-info",
        "no-payment-method-available",
        "agentic-payment-insufficient-amount",
        "x402-agentic-payment-insufficient-amount",
    }
)
PERMISSION_TYPES = frozenset(
    {
        "insufficient-permissions",
        "full-permission-actor-not-approved",
        "full-permission-actor-blocked-for-admin",
        "elevated-permissions-needed",
        "token-not-provided",
        "user-or-token-not-found",
        "invalid-token",
    }
)
NOT_FOUND_TYPES = frozenset({"record-not-found", "actor-not-found", "build-not-found"})
# httpx failures raised before a single byte of the request left this process.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > BODY_EXCERPT_CHARS:
        text = text[: BODY_EXCERPT_CHARS - 1] + "…"
    return text


def apify_error_fields(response: httpx.Response) -> tuple[str | None, str | None]:
    """``(type, message)`` from Apify's ``{"error": {"type", "message"}}``, when the body has it."""
    try:
        body: Any = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None, None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    kind = error.get("type")
    message = error.get("message")
    return (
        kind if isinstance(kind, str) else None,
        _excerpt(message) if isinstance(message, str) else None,
    )


def error_for_response(
    response: httpx.Response, *, operation: str, side_effect: bool = False
) -> errors.ApifyError:
    """The typed error for a non-2xx answer. ``side_effect`` marks a start request."""
    status = response.status_code
    apify_type, apify_message = apify_error_fields(response)
    if apify_message is None and response.content:
        apify_message = _excerpt(response.content[:BODY_EXCERPT_CHARS].decode("utf-8", "replace"))
    detail = f"{operation}: HTTP {status}"
    if apify_type:
        detail += f" {apify_type}"
    if apify_message:
        detail += f": {apify_message}"
    fields: dict[str, Any] = {"status_code": status, "apify_type": apify_type}

    by_type = _error_for_type(apify_type, detail, fields)
    if by_type is not None:
        return by_type
    if status == 429:
        return errors.ApifyNotNowError(detail, kind=errors.ErrorKind.RATE_LIMITED, **fields)
    if status == 402:
        return errors.ApifyBillingError(detail, **fields)
    if status in (401, 403):
        return errors.ApifyAuthError(detail, **fields)
    if status == 404:
        return errors.ApifyNotFoundError(detail, **fields)
    if status >= 500 or status == 408:
        if side_effect:
            return errors.ApifyStartUnknownError(detail, **fields)
        return errors.ApifyTransientError(detail, **fields)
    if 400 <= status < 500:
        return errors.ApifyInvalidInputError(detail, **fields)
    # 1xx/3xx: nothing we asked for; treat like a garbled answer.
    if side_effect:
        return errors.ApifyStartUnknownError(detail, **fields)
    return errors.ApifyTransientError(detail, **fields)


def _error_for_type(
    apify_type: str | None, detail: str, fields: dict[str, Any]
) -> errors.ApifyError | None:
    """The error Apify's ``error.type`` alone decides, whatever the status; else None."""
    if apify_type in RATE_LIMIT_TYPES:
        return errors.ApifyNotNowError(detail, kind=errors.ErrorKind.RATE_LIMITED, **fields)
    if apify_type in NOT_NOW_TYPES:
        return errors.ApifyNotNowError(detail, **fields)
    if apify_type in BILLING_TYPES:
        return errors.ApifyBillingError(detail, **fields)
    if apify_type in PERMISSION_TYPES:
        return errors.ApifyAuthError(detail, **fields)
    if apify_type in NOT_FOUND_TYPES:
        return errors.ApifyNotFoundError(detail, **fields)
    return None


def error_for_exception(
    exc: BaseException, *, operation: str, side_effect: bool = False
) -> errors.ApifyError:
    """The typed error for an httpx failure or an attempt that ran out of time."""
    name = type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        return errors.ApifyTransientError(f"{operation}: {name} before the request was sent")
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        message = f"{operation}: no answer in time ({name})"
    else:
        message = f"{operation}: {name} ({_excerpt(str(exc)) or 'no detail'})"
    if side_effect:
        return errors.ApifyStartUnknownError(message)
    return errors.ApifyTransientError(message)


def malformed_body(
    response: httpx.Response, *, operation: str, reason: str, side_effect: bool = False
) -> errors.ApifyError:
    """The typed error for a 2xx answer whose body we cannot use (HTML, truncated JSON...)."""
    content_type = response.headers.get("content-type", "?")
    message = f"{operation}: HTTP {response.status_code} {reason} (content-type {content_type})"
    if side_effect:
        return errors.ApifyStartUnknownError(message, status_code=response.status_code)
    return errors.ApifyTransientError(message, status_code=response.status_code)
