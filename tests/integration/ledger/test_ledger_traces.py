"""The run ledger's trace: each round that claimed runs is a trace of its own, each run it
looks at a span under the round, and that run's Apify requests sit under the run's span
(before, they were roots with nothing to say whose they were). A round with nothing to do
makes no span."""

from __future__ import annotations

from ledger_kit import DEFAULT_TOKEN, LedgerKit

from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes, span_capture


async def test_a_ledger_round_traces_each_run_and_its_apify_requests(kit: LedgerKit) -> None:
    brand, _ = await kit.brand()
    task, lease, run = await kit.running_job(brand)
    ledger = kit.ledger()
    with span_capture.capture() as exported:
        assert await ledger.round() == 0  # the job still follows its run
        assert exported.get_finished_spans() == ()

        await queue_jobs.cancel(kit.engine, lease.job_id)
        await kit.crash(task)
        exported.clear()
        assert await ledger.round() == 1
        spans = exported.get_finished_spans()

    round_span = outcomes.only([s for s in spans if s.name == "ledger round"])
    assert round_span.parent is None
    assert round_span.attributes is not None
    assert round_span.attributes["kairo.ledger.runs"] == 1
    run_span = outcomes.only([s for s in spans if s.name == "ledger run"])
    assert run_span.context is not None
    assert round_span.context is not None
    assert span_capture.parent_id(run_span) == round_span.context.span_id
    assert run_span.attributes is not None
    assert run_span.attributes["apify.run_id"] == run.apify_run_id
    assert run_span.attributes["kairo.run.id"] == str(run.id)
    assert run_span.attributes["kairo.account"] == "default"

    requests = [s for s in spans if s.name.startswith("apify ")]
    assert "apify abort_run" in {s.name for s in requests}
    assert {span_capture.parent_id(s) for s in requests} == {run_span.context.span_id}
    for span in spans:
        texts = [str(v) for v in (span.attributes or {}).values()]
        assert not any(DEFAULT_TOKEN in text for text in texts), span.name
