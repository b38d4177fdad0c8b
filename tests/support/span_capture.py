"""Spans recorded in memory: the SDK's in-memory exporter installed through
``tracing.use``, as ``service/telemetry.py`` installs the OTLP one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import export
from opentelemetry.sdk.trace.export import in_memory_span_exporter

from kairo_ingest import tracing


@contextlib.contextmanager
def capture() -> Iterator[in_memory_span_exporter.InMemorySpanExporter]:
    exporter = in_memory_span_exporter.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)
        provider.shutdown()


def parent_id(span: sdk_trace.ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None
