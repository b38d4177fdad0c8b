"""The spans of :mod:`kairo_ingest.tracing` itself and of the pipeline's database retries.

A retry is a span (its operation, number, backoff and the error kind that asked for it)
under whatever span is current; an exception marks a span with its kind and redacted
text, never a secret; without a provider a span records nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import in_memory_span_exporter

from kairo_ingest import errors, redaction, tracing
from kairo_ingest.pipeline import tx
from support import span_capture

SECRET = "apify_api_SeCrEtToKeN123456"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def spans() -> Iterator[in_memory_span_exporter.InMemorySpanExporter]:
    with span_capture.capture() as exporter:
        yield exporter


def _policy(clock: Clock) -> tx.Policy:
    return tx.Policy(budget_seconds=10.0, clock=clock, sleep=clock.sleep)


async def test_each_database_retry_is_a_span_under_the_current_one(
    spans: in_memory_span_exporter.InMemorySpanExporter,
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise errors.DatabaseUnavailableError("connection was closed")
        return "done"

    with tracing.span("source x.y"):
        assert await tx.call(_policy(Clock()), flaky, operation="update_run") == "done"

    finished = spans.get_finished_spans()
    (outer,) = [s for s in finished if s.name == "source x.y"]
    retries = [s for s in finished if s.name == "db retry update_run"]
    assert [s.attributes["kairo.retry"] for s in retries if s.attributes] == [1, 2]
    assert outer.context is not None
    assert all(s.parent is not None and s.parent.span_id == outer.context.span_id for s in retries)
    for retry in retries:
        assert retry.attributes is not None
        assert retry.attributes["db.operation.name"] == "update_run"
        assert retry.attributes["kairo.retry.cause"] == errors.ErrorKind.DATABASE.value
    # The first retry's attempt failed again (the second retry followed); the last worked.
    assert retries[0].status.status_code is trace.StatusCode.ERROR
    assert retries[1].status.status_code is trace.StatusCode.UNSET


async def test_a_call_that_works_at_once_makes_no_retry_span(
    spans: in_memory_span_exporter.InMemorySpanExporter,
) -> None:
    async def works() -> int:
        return 1

    assert await tx.call(_policy(Clock()), works, operation="read") == 1
    assert spans.get_finished_spans() == ()


async def test_a_retry_that_gives_up_raises_the_last_error(
    spans: in_memory_span_exporter.InMemorySpanExporter,
) -> None:
    async def down() -> None:
        raise errors.DatabaseUnavailableError("connection refused")

    with pytest.raises(errors.DatabaseUnavailableError):
        await tx.call(_policy(Clock()), down, operation="opening_read")
    retries = [s for s in spans.get_finished_spans() if s.name == "db retry opening_read"]
    assert retries, "no retry span"
    assert all(s.status.status_code is trace.StatusCode.ERROR for s in retries)


def test_a_failed_span_carries_the_kind_and_no_secret(
    spans: in_memory_span_exporter.InMemorySpanExporter,
) -> None:
    redaction.register_secret(SECRET)
    with (
        pytest.raises(errors.ApifyAuthError),
        tracing.span("apify get_run", {"note": f"token={SECRET}", "skipped": None}),
    ):
        raise errors.ApifyAuthError(f"refused: Bearer {SECRET}")

    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert "skipped" not in span.attributes
    assert span.attributes["error.type"] == errors.ErrorKind.AUTH.value
    assert span.status.status_code is trace.StatusCode.ERROR
    texts = [*map(str, span.attributes.values()), span.status.description or ""]
    assert not any(SECRET in text for text in texts)
    assert span.events == ()  # no exception event: its message and stack are not sent


def test_without_a_provider_a_span_records_nothing() -> None:
    tracing.use(None)
    assert not tracing.on()
    with tracing.span("job compile", {"kairo.job.id": "x"}) as span:
        assert not span.is_recording()
        tracing.annotate(span, {"more": 1})
        # Nothing is current either: tasks started here see no span.
        assert not trace.get_current_span().get_span_context().is_valid
    # Off, a passed traceparent is not even parsed: the job's span is the invalid one.
    assert tracing.parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == {}


def test_a_jobs_parent_is_the_passed_traceparent_or_nothing(
    spans: in_memory_span_exporter.InMemorySpanExporter,
) -> None:
    context = tracing.parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    remote = trace.get_current_span(context).get_span_context()
    assert remote.is_remote
    assert f"{remote.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert f"{remote.span_id:016x}" == "00f067aa0ba902b7"
    assert not trace.get_current_span(tracing.parent(None)).get_span_context().is_valid
