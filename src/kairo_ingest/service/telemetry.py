"""Tracing on or off: the OpenTelemetry SDK, installed here and nowhere else.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
set and ``OTEL_SDK_DISABLED`` is not ``true``: a tracer provider with a batch span
processor and the OTLP/HTTP (protobuf) exporter, configured by the SDK from the standard
variables (``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_TIMEOUT``,
``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, ``OTEL_RESOURCE_ATTRIBUTES``...). The service is
named ``kairo-ingest`` unless ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` names it.
Spans leave on the processor's own thread, never on the event loop.

Off otherwise: the SDK is not even imported, and :mod:`kairo_ingest.tracing` answers
with the API's no-op tracer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping

import kairo_ingest
from kairo_ingest import logs, tracing

log = logs.get(__name__)

SERVICE_NAME = "kairo-ingest"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(environ: Mapping[str, str]) -> bool:
    """An OTLP endpoint is set, and the SDK is not disabled."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


@contextlib.asynccontextmanager
async def traces(environ: Mapping[str, str] | None = None) -> AsyncIterator[bool]:
    """Install the SDK for the block when it is wanted (yields whether it is); on the way
    out, the spans still queued are sent (bounded by the exporter's timeout, off the loop)
    and the no-op tracer is back."""
    env = os.environ if environ is None else environ
    if not wanted(env):
        yield False
        return
    # Imported only when tracing is on: the SDK costs nothing to a process that does not.
    from opentelemetry.exporter.otlp.proto.http import trace_exporter
    from opentelemetry.sdk import resources
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace import export

    resource = resources.Resource.create({"service.version": kairo_ingest.__version__})
    named = str(resource.attributes.get("service.name", ""))
    if not named or named.startswith("unknown_service"):
        resource = resource.merge(resources.Resource({"service.name": SERVICE_NAME}))
    provider = sdk_trace.TracerProvider(resource=resource)
    provider.add_span_processor(export.BatchSpanProcessor(trace_exporter.OTLPSpanExporter()))
    tracing.use(provider)
    log.info(
        "tracing_on",
        service=str(resource.attributes.get("service.name")),
        exporter="otlp/http",
    )
    try:
        yield True
    finally:
        tracing.use(None)
        await asyncio.to_thread(provider.shutdown)
