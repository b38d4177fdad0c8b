"""The spans the service makes, through the OpenTelemetry API only.

Every layer above the domain may open a span here: the worker one per job, the pipeline
one per source, page write and database retry, the Apify client one per request. The SDK
(a provider, the OTLP/HTTP exporter) is installed by the composition root alone
(``service/telemetry.py``) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set. Until then
:func:`span` does not even call the API: it hands back the API's invalid span, and a
span costs one flag check (well under a microsecond).

What a span may carry: ids (job, brand, source, run, dataset), kinds, counts and
operation names, never a token, a URL or an input. String values pass through
:func:`kairo_ingest.redaction.redact` all the same, and an exception becomes the span's
error status with its classified kind and :func:`kairo_ingest.errors.describe` (redacted)
text: no stack trace and no exception event, which could quote more than we mean to send.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation import tracecontext

import kairo_ingest
from kairo_ingest import errors, redaction

NAME = "kairo_ingest"

Span = trace.Span
SpanKind = trace.SpanKind
Value = str | bool | int | float
Attributes = Mapping[str, Value | None]

_PROPAGATOR = tracecontext.TraceContextTextMapPropagator()
# The global provider's proxy: the API's no-op tracer until a provider is installed.
_tracer: trace.Tracer = trace.get_tracer(NAME, kairo_ingest.__version__)
# Off (no provider): span() skips the API altogether. Its no-op path still stacks four
# context managers and a context switch per span (about 25 us on the development machine,
# against under 1 us for the shortcut: bench/tracing_overhead.py).
_on = False


class _Off:
    """The span context of tracing off: the API's invalid span, nothing else."""

    __slots__ = ()

    def __enter__(self) -> trace.Span:
        return trace.INVALID_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


_OFF = _Off()


def use(provider: trace.TracerProvider | None) -> None:
    """Send this process's spans to ``provider``; None goes back to the global one (the
    API's no-op tracer unless something installed a provider there first)."""
    global _tracer, _on
    source = provider if provider is not None else trace.get_tracer_provider()
    _tracer = source.get_tracer(NAME, kairo_ingest.__version__)
    _on = not isinstance(source, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def on() -> bool:
    """Spans are recorded (a provider is installed)."""
    return _on


def parent(traceparent: str | None) -> otel_context.Context:
    """The context a job's span starts in: the trace its enqueue passed, or none (the job's
    span is then a root, never a child of whatever the worker's task had current)."""
    empty = otel_context.Context()
    if traceparent is None or not _on:
        return empty
    return _PROPAGATOR.extract({"traceparent": traceparent}, context=empty)


def _clean(attributes: Attributes | None) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for key, value in (attributes or {}).items():
        if value is None:
            continue
        out[key] = redaction.redact(value) if isinstance(value, str) else value
    return out


def annotate(current: trace.Span, attributes: Attributes) -> None:
    """Add attributes to a span that records (a no-op span skips the work)."""
    if current.is_recording():
        current.set_attributes(_clean(attributes))


def span(
    name: str,
    attributes: Attributes | None = None,
    *,
    context: otel_context.Context | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
) -> contextlib.AbstractContextManager[trace.Span]:
    """A span around the block, current inside it (tasks started inside inherit it).

    An exception leaves the block as it came, after marking the span: ``error.type`` (its
    classified kind) and an error status with its redacted description. Cancellation is
    marked ``kairo.cancelled``, not as an error. With tracing off: the invalid span, and
    nothing more.
    """
    if not _on:
        return _OFF
    return _recorded(name, attributes, context, kind)


@contextlib.contextmanager
def _recorded(
    name: str,
    attributes: Attributes | None,
    context: otel_context.Context | None,
    kind: trace.SpanKind,
) -> Iterator[trace.Span]:
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, record_exception=False, set_status_on_exception=False
    ) as current:
        if attributes and current.is_recording():  # tracing off: no redaction work either
            current.set_attributes(_clean(attributes))
        try:
            yield current
        except asyncio.CancelledError:
            if current.is_recording():
                current.set_attribute("kairo.cancelled", True)
            raise
        except BaseException as exc:
            fail(current, exc)
            raise


def fail(current: trace.Span, exc: BaseException) -> None:
    """Mark a span failed by ``exc`` (its kind and redacted description, nothing more)."""
    if current.is_recording():
        fail_as(current, errors.classify(exc)[0].value, errors.describe(exc))


def fail_as(current: trace.Span, kind: str | None, description: str | None) -> None:
    """Mark a span failed with a stored error's kind and text (an evidence entry's)."""
    if not current.is_recording():
        return
    if kind is not None:
        current.set_attribute("error.type", kind)
    current.set_status(trace.StatusCode.ERROR, redaction.redact(description or kind or "error"))
