"""A compile job's trace: the job, its sources, their Apify requests and page writes.

A real worker runs one compile job against the simulator, with the SDK's in-memory
exporter installed through ``tracing.use`` (what ``service/telemetry.py`` does with the
OTLP exporter). The span tree must be: the job's span at the top (a root, or the child of
the traceparent its enqueue passed), one span per source under it, and each source's Apify
requests and page writes under that source; no attribute or status carries the token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.export import in_memory_span_exporter
from pipeline_kit import TOKEN, Kit

from kairo_ingest import config
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import handlers
from kairo_ingest.worker import core, parameters
from support import outcomes, span_capture

BOUND_SECONDS = 60.0  # only the bound after which a test fails instead of hanging
TWO_SOURCES = [("tiktok", "profile_videos", "@acme"), ("instagram", "posts", "@acme")]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"

Spans = Sequence[sdk_trace.ReadableSpan]


@pytest.fixture
def spans() -> Iterator[in_memory_span_exporter.InMemorySpanExporter]:
    with span_capture.capture() as exporter:
        yield exporter


async def _run_one_job(kit: Kit, db_url: str, traceparent: str | None) -> queue_jobs.JobRow:
    brand, _added = await kit.brand(TWO_SOURCES)
    job, _ = await queue_jobs.enqueue(
        kit.engine, kind="compile", brand_id=brand, traceparent=traceparent
    )
    settings = config.Settings(database_url=db_url, listen_notify=False, poll_interval_seconds=0.1)
    worker = core.Worker(
        kit.engine,
        handlers.table(kit.deps(page_size=7)),
        parameters.WorkerConfig.from_settings(
            settings, owner=f"test-{uuid.uuid4().hex[:6]}", concurrency=2, dsn_for_listen=db_url
        ),
    )
    await outcomes.within(BOUND_SECONDS, worker.run(drain=True))
    row = await queue_jobs.get(kit.engine, job.id)
    assert row is not None
    assert row.status == "succeeded", row.last_error
    return row


def _by_name_prefix(spans: Spans, prefix: str) -> list[sdk_trace.ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


_parent_id = span_capture.parent_id


def _check_tree(spans: Spans, job_id: uuid.UUID) -> sdk_trace.ReadableSpan:
    """The shape every compile job's trace has; returns the job's span."""
    (job_span,) = _by_name_prefix(spans, "job ")
    assert job_span.name == "job compile"
    assert job_span.attributes is not None
    assert job_span.attributes["kairo.job.id"] == str(job_id)
    assert job_span.context is not None
    job_span_id = job_span.context.span_id
    trace_id = job_span.context.trace_id
    assert {s.context.trace_id for s in spans if s.context is not None} == {trace_id}

    sources = _by_name_prefix(spans, "source ")
    assert sorted(s.name for s in sources) == [
        "source instagram.posts",
        "source tiktok.profile_videos",
    ]
    assert all(_parent_id(s) == job_span_id for s in sources)
    source_ids = {s.context.span_id for s in sources if s.context is not None}
    for source in sources:
        assert source.attributes is not None
        assert source.attributes["kairo.evidence.bucket"] == "refreshed"
        assert source.attributes["apify.run_id"]

    requests = _by_name_prefix(spans, "apify ")
    names = {s.name for s in requests}
    assert {"apify start_run", "apify get_run", "apify iter_dataset_items"} <= names
    assert all(_parent_id(s) in source_ids for s in requests), "an Apify request outside a source"
    # Every request about a run names it; a start names the run its answer created.
    for request in requests:
        assert request.attributes is not None
        if request.name in ("apify start_run", "apify get_run"):
            assert str(request.attributes["apify.run_id"]).strip()
    page_writes = _by_name_prefix(spans, "page write")
    assert page_writes, "no page write span"
    assert all(_parent_id(s) in source_ids for s in page_writes)
    assert sum(int(s.attributes["kairo.page.items"]) for s in page_writes if s.attributes) > 0
    # Each source's requests and pages sit under that very source.
    for source in sources:
        assert source.context is not None
        under = [s for s in spans if _parent_id(s) == source.context.span_id]
        assert {s.name.split(" ")[0] for s in under} >= {"apify", "page"}
    return job_span


def _assert_no_token(spans: Spans) -> None:
    for span in spans:
        texts = [str(v) for v in (span.attributes or {}).values()]
        texts.append(span.status.description or "")
        texts.extend(str(v) for e in span.events for v in (e.attributes or {}).values())
        assert not any(TOKEN in text for text in texts), f"the token is in span {span.name}"


async def test_a_jobs_span_continues_the_trace_its_enqueue_passed(
    kit: Kit, db_url: str, spans: in_memory_span_exporter.InMemorySpanExporter
) -> None:
    row = await _run_one_job(kit, db_url, TRACEPARENT)

    assert row.traceparent == TRACEPARENT
    finished = spans.get_finished_spans()
    job_span = _check_tree(finished, row.id)
    assert job_span.context is not None
    assert f"{job_span.context.trace_id:032x}" == TRACE_ID
    assert job_span.parent is not None
    assert f"{job_span.parent.span_id:016x}" == CALLER_SPAN_ID
    assert job_span.parent.is_remote
    _assert_no_token(finished)


async def test_a_job_enqueued_without_a_traceparent_is_a_root_span(
    kit: Kit, db_url: str, spans: in_memory_span_exporter.InMemorySpanExporter
) -> None:
    row = await _run_one_job(kit, db_url, None)

    assert row.traceparent is None
    finished = spans.get_finished_spans()
    job_span = _check_tree(finished, row.id)
    assert job_span.parent is None
    _assert_no_token(finished)


async def test_a_folded_enqueue_keeps_the_first_traceparent(kit: Kit) -> None:
    brand, _added = await kit.brand(TWO_SOURCES)
    first, _ = await queue_jobs.enqueue(
        kit.engine, kind="compile", brand_id=brand, traceparent=TRACEPARENT.upper()
    )
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    folded, created = await queue_jobs.enqueue(
        kit.engine, kind="compile", brand_id=brand, traceparent=other
    )

    assert first.traceparent == TRACEPARENT  # stored normalized (lower case)
    assert not created
    assert folded.id == first.id
    assert folded.traceparent == TRACEPARENT
    leases = await queue_jobs.claim(kit.engine, owner="test", limit=1, lease_seconds=60)
    assert [lease.traceparent for lease in leases] == [TRACEPARENT]
