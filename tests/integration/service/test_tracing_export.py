"""``run`` exports its spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

A tiny OTLP receiver on loopback (plain asyncio: ``POST /v1/traces``, protobuf) stands
in for a collector; the service runs one compile job against the built-in simulator with
``run --drain``'s code path and the standard variables set. The receiver must get the
job's span, in the trace its enqueue passed, from a service named ``kairo-ingest``; with
the endpoint unset, tracing stays off and the SDK is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config, tracing
from kairo_ingest.db import sources
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import resources as service_resources
from kairo_ingest.service import runner, telemetry

BOUND_SECONDS = 90.0  # only the bound after which a test fails instead of hanging
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@dataclasses.dataclass
class Receiver:
    url: str
    posts: list[tuple[str, str, bytes]] = dataclasses.field(default_factory=list)

    def spans(self) -> list[tuple[str, str, bytes]]:
        """(service name, span name, trace id) of every span received."""
        out = []
        for path, content_type, body in self.posts:
            assert path == "/v1/traces"
            assert content_type == "application/x-protobuf"
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                names = [
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ]
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append((names[0] if names else "", span.name, span.trace_id))
        return out


async def _handle(
    receiver: Receiver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, value = line.split(":", 1)
                    headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "POST":
                receiver.posts.append((path, headers.get("content-type", ""), body))
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(url="")
    server = await asyncio.start_server(
        lambda r, w: _handle(receiver, r, w), host="127.0.0.1", port=0
    )
    port = server.sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()


def _settings(db_url: str) -> config.Settings:
    return config.Settings(
        database_url=db_url,
        apify_simulator=True,
        http_port=0,
        listen_notify=False,
        poll_interval_seconds=0.1,
        shutdown_grace_seconds=5.0,
    )


async def _one_job(db_url: str) -> uuid.UUID:
    settings = _settings(db_url)
    async with service_resources.database(settings) as db:
        brand = uuid.uuid4()
        await sources.add(
            db.engine,
            brand_id=brand,
            platform="tiktok",
            capability="profile_videos",
            identifier="@acme",
        )
        job, _ = await queue_jobs.enqueue(
            db.engine, kind="compile", brand_id=brand, traceparent=TRACEPARENT
        )
    return job.id


async def test_run_sends_its_spans_to_the_otlp_endpoint(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await _one_job(db_url)
    async with otlp_receiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
        monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")

        code = await asyncio.wait_for(
            runner.run(_settings(db_url), concurrency=2, drain=True), BOUND_SECONDS
        )

        assert code == 0
        received = receiver.spans()
    assert received, "no span reached the OTLP endpoint"
    assert {service for service, _name, _trace in received} == {"kairo-ingest"}
    names = {name for _service, name, _trace in received}
    assert {"job compile", "source tiktok.profile_videos", "apify start_run", "page write"} <= (
        names
    )
    job_traces = {trace_id.hex() for _s, name, trace_id in received if name == "job compile"}
    assert job_traces == {TRACE_ID}
    # Once the service has stopped, tracing is off again: back to the API's no-op tracer.
    with tracing.span("after") as after:
        assert not after.is_recording()
    async with _engine_of(db_url) as engine:
        row = await queue_jobs.get(engine, job_id)
    assert row is not None
    assert row.status == "succeeded"


async def test_tracing_stays_off_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in telemetry.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    async with telemetry.traces() as on:
        assert on is False
        with tracing.span("off") as span:
            assert span is trace.INVALID_SPAN or not span.is_recording()
    async with telemetry.traces(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"}
    ) as on:
        assert on is False


@contextlib.asynccontextmanager
async def _engine_of(db_url: str) -> AsyncIterator[sa_async.AsyncEngine]:
    settings = _settings(db_url)
    async with service_resources.database(settings) as db:
        yield db.engine
