"""structlog set-up: JSON off a terminal, console on one, with secrets scrubbed.

Job context (``job_id``, ``brand_id``, ``source_id``, ``apify_run_id``) is bound with
:func:`bind` into contextvars, so every line logged inside a job's task names them
without passing them around; each asyncio task gets its own copy of the context.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import structlog

from kairo_ingest import redaction

_SENSITIVE_KEYS = frozenset({"authorization", "token", "apify_token", "password"})


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redaction.redact(value)
    if isinstance(value, dict):
        return {
            k: (redaction.MASK if str(k).lower() in _SENSITIVE_KEYS else _scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop the Apify token and any Authorization value wherever they appear in a record."""
    for key in list(event_dict):
        if key.lower() in _SENSITIVE_KEYS:
            event_dict[key] = redaction.MASK
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


# A job task's context, set once at the top of its task (see bind_task).
_TASK: contextvars.ContextVar[Mapping[str, object] | None] = contextvars.ContextVar(
    "kairo_task_context", default=None
)


def bind_task(**values: object) -> None:
    """Bind context for the rest of the current asyncio task, in one contextvar set.

    For the worker's hot path: :func:`bind` costs a structlog contextvar per key, a
    ``str()`` per value and a reset per key for every job; this stores the values as they
    are and renders them only when a line is logged. Call it only at the top of a task of
    its own (the task's context is a copy, so nothing leaks to the caller); tasks the job
    starts inherit it.
    """
    _TASK.set(values)


def merge_task_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    values = _TASK.get()
    if values:
        for key, value in values.items():
            if value is not None:
                event_dict.setdefault(key, str(value))
    return event_dict


def configure(*, level: str = "INFO", json_format: bool = True) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        merge_task_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_format
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries that use stdlib logging go to stderr at WARNING and above,
    # through the same redaction as our own lines (asyncio's exception handler, uvicorn,
    # SQLAlchemy's pool: their messages and tracebacks can quote a URL or a header).
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RedactingFilter(logging.Filter):
    """Masks secrets in a stdlib log record's message and traceback before any handler
    formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redaction.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redaction.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


@contextlib.contextmanager
def bind(**values: object) -> Iterator[None]:
    """Bind job context for the duration of a block (contextvars, task-local)."""
    clean = {k: str(v) for k, v in values.items() if v is not None}
    tokens = structlog.contextvars.bind_contextvars(**clean)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def get(name: str) -> Any:
    return structlog.get_logger(name)
