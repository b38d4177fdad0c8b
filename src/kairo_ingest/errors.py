"""The one exception tree of kairo-ingest.

Every error we raise, and every third-party error we translate at a boundary
(``raise ApifyTransientError(...) from exc``), is a :class:`KairoError`::

    KairoError
    ├── ConfigError                    bad setting; the process refuses to start (exit 2)
    ├── UsageError                     bad command-line input (exit 2)
    ├── DatabaseError
    │   ├── DatabaseUnavailableError   connection lost, deadlock, timeouts      retryable
    │   ├── DatabaseValueError         a value the database refuses (22, 54)     permanent
    │   ├── DatabaseConstraintError    an integrity constraint (SQLSTATE 23xxx) permanent
    │   └── SchemaNotAtHeadError       schema behind the code; run `migrate`
    ├── LeaseLostError                 our lease token no longer matches the job row
    └── JobError                       an error that is stored on a job or a run
        ├── ApifyError                 anything Apify said or did not say
        │   ├── ApifyTransientError    network error, 5xx, unparsable body      retryable
        │   │   └── ApifyStartUnknownError a start that may have reached Apify: reconcile
        │   ├── ApifyNotNowError       rate/concurrency/memory limit (by type)  snooze
        │   ├── ApifyAuthError         401, 403, permission types               permanent
        │   │   └── ApifyBillingError  402, billing types (paid actor, x402)    permanent
        │   ├── ApifyNotFoundError     404                                      permanent
        │   ├── ApifyInvalidInputError 400 and other 4xx                        permanent
        │   ├── ApifyRunFailedError    the run ended FAILED / ABORTED / TIMED-OUT retryable
        │   └── ApifyTimeoutError      our monotonic deadline passed            retryable
        ├── BudgetExceededError        a daily spend cap is reached              snooze
        ├── NormalizationError         a whole batch could not be normalized    permanent
        └── HandlerError               any other failure inside a job handler   retryable

Each :class:`JobError` carries a ``kind`` (an :class:`ErrorKind` string stored in
``last_error_kind`` / ``error_kind``), a ``retryable`` flag and a ``snooze`` flag.
``snooze`` means "not now": the job waits without spending an attempt.

Messages are short and never hold the Apify token: :func:`kairo_ingest.redaction.redact`
runs over every message at construction time.

This module imports nothing from I/O libraries, so the pure domain can use it.
"""

from __future__ import annotations

import enum

from kairo_ingest import redaction

MAX_MESSAGE_CHARS = 500


class ErrorKind(enum.StrEnum):
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    NOT_NOW = "not_now"
    APIFY_FAILED = "apify_failed"
    APIFY_TRANSIENT = "apify_transient"
    INVALID_INPUT = "invalid_input"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    NORMALIZATION = "normalization"
    DATABASE = "database"
    LEASE_LOST = "lease_lost"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    CONFIG = "config"
    BUDGET_EXCEEDED = "budget_exceeded"


def _clean(message: str) -> str:
    text = redaction.redact(message)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


class KairoError(Exception):
    """Root of every error kairo-ingest raises."""

    kind: ErrorKind = ErrorKind.INTERNAL
    retryable: bool = False
    snooze: bool = False

    def __init__(self, message: str) -> None:
        self.message = _clean(message)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind.value!r}, message={self.message!r})"


class ConfigError(KairoError):
    """A setting is missing or invalid. ``variable`` names it (``KAIRO_LEASE_SECONDS``)."""

    kind = ErrorKind.CONFIG

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        self.variable = variable
        super().__init__(message)


class UsageError(KairoError):
    """Bad command-line input: the CLI prints it on one line and exits 2."""

    kind = ErrorKind.INVALID_INPUT


class DatabaseError(KairoError):
    """A database failure, translated at the boundary in ``kairo_ingest.db.dberrors``.

    ``sqlstate`` is the server's error code when there is one; ``constraint_name`` names
    the violated constraint of an integrity error.
    """

    kind = ErrorKind.DATABASE

    def __init__(
        self, message: str, *, sqlstate: str | None = None, constraint_name: str | None = None
    ) -> None:
        self.sqlstate = sqlstate
        self.constraint_name = constraint_name
        super().__init__(message)


class DatabaseUnavailableError(DatabaseError):
    """Connection lost or refused, or a transient conflict (deadlock, serialization
    failure, lock or statement timeout, too many connections): worth another try."""

    retryable = True


class DatabaseValueError(DatabaseError):
    """The database refused a value: SQLSTATE class 22 (data exception: NaN or a lone
    surrogate in jsonb, a NUL in text) or 54 (program limit: JSON nested past the
    server's stack depth, an index row too big). Retrying the same value cannot help.
    """


class DatabaseConstraintError(DatabaseError):
    """An integrity constraint was violated (SQLSTATE class 23): retrying cannot help."""


class SchemaNotAtHeadError(DatabaseError):
    pass


class LeaseLostError(KairoError):
    """The job row's lease token is no longer ours: another owner, a cancel or an expiry."""

    kind = ErrorKind.LEASE_LOST


class JobError(KairoError):
    """An error stored on a job or run, with a kind and a retry classification."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind | None = None,
        retryable: bool | None = None,
        snooze: bool | None = None,
        retry_after_seconds: float | None = None,
    ) -> None:
        self.retry_after_seconds = retry_after_seconds
        if kind is not None:
            self.kind = kind
        if retryable is not None:
            self.retryable = retryable
        if snooze is not None:
            self.snooze = snooze
        super().__init__(message)


class BudgetExceededError(JobError):
    """A daily spend cap (an account's or a brand's) is reached: no new run starts.

    Snooze semantics: the job waits without spending an attempt, until the cap's window
    resets (``retry_after_seconds``, the time left in the window).
    """

    kind = ErrorKind.BUDGET_EXCEEDED
    retryable = True
    snooze = True

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)


def retry_after(exc: BaseException) -> float | None:
    """The least wait an error asks for before the job runs again (None: the usual one)."""
    value = getattr(exc, "retry_after_seconds", None)
    return float(value) if isinstance(value, int | float) and value > 0 else None


class HandlerError(JobError):
    kind = ErrorKind.INTERNAL
    retryable = True


class NormalizationError(JobError):
    kind = ErrorKind.NORMALIZATION


class ApifyError(JobError):
    """Base for every Apify failure; carries the HTTP status and Apify's error type."""

    kind = ErrorKind.APIFY_TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        apify_type: str | None = None,
        kind: ErrorKind | None = None,
        retryable: bool | None = None,
        snooze: bool | None = None,
    ) -> None:
        self.status_code = status_code
        self.apify_type = apify_type
        super().__init__(message, kind=kind, retryable=retryable, snooze=snooze)


class ApifyTransientError(ApifyError):
    kind = ErrorKind.APIFY_TRANSIENT
    retryable = True


class ApifyStartUnknownError(ApifyTransientError):
    """A start request failed after it may have reached Apify: the run may or may not exist.

    Retryable, but only through reconciliation (list the actor's runs, compare INPUT
    records), never by sending the start again.
    """


class ApifyNotNowError(ApifyError):
    """Rate limited, or Apify cannot start the run now: retry later without using an attempt."""

    kind = ErrorKind.NOT_NOW
    retryable = True
    snooze = True


class ApifyAuthError(ApifyError):
    kind = ErrorKind.AUTH


class ApifyBillingError(ApifyAuthError):
    """Apify refuses for billing reasons (``not-enough-usage-to-run-paid-actor``, 402...).

    Kind ``auth``: like a bad token, only a change to the account fixes it. Permanent.
    """


class ApifyNotFoundError(ApifyError):
    kind = ErrorKind.NOT_FOUND


class ApifyInvalidInputError(ApifyError):
    kind = ErrorKind.INVALID_INPUT


class ApifyRunFailedError(ApifyError):
    """The run reached a terminal status other than SUCCEEDED."""

    kind = ErrorKind.APIFY_FAILED
    retryable = True


class ApifyTimeoutError(ApifyError):
    """Our monotonic deadline passed before the run (or a request) finished."""

    kind = ErrorKind.TIMEOUT
    retryable = True


def classify(exc: BaseException) -> tuple[ErrorKind, bool, bool]:
    """``(kind, retryable, snooze)`` of any exception; unknown ones are internal and retryable."""
    if isinstance(exc, KairoError):
        return exc.kind, exc.retryable, exc.snooze
    return ErrorKind.INTERNAL, True, False


def describe(exc: BaseException) -> str:
    """A short, redacted, one-line description of any exception for storage and logs."""
    if isinstance(exc, KairoError):
        return exc.message
    text = str(exc) or type(exc).__name__
    return _clean(f"{type(exc).__name__}: {text}")
