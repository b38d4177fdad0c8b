"""Translating what happened on the wire into the typed errors of :mod:`kairo_ingest.errors`.

=================================================  ==================================  =========
What happened                                      Error                               Retried
=================================================  ==================================  =========
connect error / connect or pool timeout            ApifyTransientError (not sent)      yes
read/write error, read timeout, dropped connection ApifyTransientError                 yes
5xx, 408                                           ApifyTransientError                 yes
2xx with a non-JSON, truncated or malformed body   ApifyTransientError                 yes
429 rate-limit-exceeded                            ApifyNotNowError(RATE_LIMITED)      yes
400 concurrent-runs-limit-exceeded,                ApifyNotNowError(NOT_NOW)           no: snooze
400 actor-memory-limit-exceeded, 402
401, 403                                           ApifyAuthError                      no
404                                                ApifyNotFoundError                  no
other 4xx                                          ApifyInvalidInputError              no
=================================================  ==================================  =========

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
NOT_NOW_TYPES = frozenset({"concurrent-runs-limit-exceeded", "actor-memory-limit-exceeded"})
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

    if status == 429:
        return errors.ApifyNotNowError(detail, kind=errors.ErrorKind.RATE_LIMITED, **fields)
    if status == 402 or (status == 400 and apify_type in NOT_NOW_TYPES):
        return errors.ApifyNotNowError(detail, **fields)
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
