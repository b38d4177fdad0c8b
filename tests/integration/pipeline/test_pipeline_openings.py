"""Compile jobs that start together read their openings in one statement.

A claim starts a batch of jobs in one turn of the event loop; each job's opening read
(now(), its brand's sources, their runs) used to be a statement of its own, which was
nearly the whole cost of a job for a brand without sources. The reads are gathered by
:class:`kairo_ingest.pipeline.openings.OpeningReads`; these tests pin that a batch costs
one statement, that each job still gets its own brand's answer, and that a cancelled or
failed read does not strand the others.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pipeline_kit import Kit

from kairo_ingest import errors
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import opening
from kairo_ingest.pipeline import compile_job, openings
from kairo_ingest.queue import endings
from support import outcomes, roundtrips

ONE = [("tiktok", "profile_videos", "@acme")]
TWO_WEB = [
    ("web", "crawl_pages", "https://a.example/"),
    ("web", "crawl_pages", "https://b.example/"),
]


async def test_jobs_that_start_together_read_their_openings_in_one_statement(kit: Kit) -> None:
    empty = uuid.uuid4()  # no sources
    reused, (reused_source,) = await kit.brand(ONE)
    first_lease = await kit.lease(reused)
    first = await compile_job.run(kit.deps(), first_lease)
    assert len(first.evidence_status["refreshed"]) == 1  # now it has a reusable run
    await endings.complete_many(kit.engine, [(first_lease, None)])
    skipped, skipped_sources = await kit.brand(TWO_WEB)
    leases = [await kit.lease(b) for b in (empty, reused, skipped)]

    d = kit.deps(disabled_capabilities=frozenset({"web.crawl_pages"}))
    with roundtrips.counting(kit.engine) as counter:
        results = await asyncio.gather(*(compile_job.run(d, lease) for lease in leases))
    await endings.complete_many(kit.engine, [(lease, None) for lease in leases])

    assert d.openings.statements == 1
    assert counter.snapshot() == {"begin": 0, "statement": 1, "commit": 0, "rollback": 0}
    # Each job got its own brand's sources and runs from the shared statement.
    empty_result, reused_result, skipped_result = results
    assert all(not empty_result.evidence_status[b] for b in ("refreshed", "reused", "skipped"))
    entry = outcomes.only(reused_result.evidence_status["reused"])
    assert entry["source_id"] == str(reused_source.id)
    assert {e["source_id"] for e in skipped_result.evidence_status["skipped"]} == {
        str(s.id) for s in skipped_sources
    }
    assert not skipped_result.evidence_status["reused"]


async def test_a_cancelled_wait_leaves_the_rest_of_its_batch_answered(kit: Kit) -> None:
    reads = openings.OpeningReads(kit.engine)
    brands = [uuid.uuid4() for _ in range(3)]
    tasks = [asyncio.create_task(reads.read(brand_id=b, job_id=uuid.uuid4())) for b in brands]
    await asyncio.sleep(0)  # each task has asked; the statement is not sent yet
    tasks[1].cancel()
    first, _, third = await asyncio.gather(*tasks, return_exceptions=True)
    for answered in (first, third):
        assert isinstance(answered, opening.Opening)
        assert answered.sources == []
    assert tasks[1].cancelled()
    assert reads.statements == 1


async def test_a_failed_statement_fails_every_read_of_its_batch_classified() -> None:
    # Nothing listens on port 9: every connection attempt is refused.
    dead = db_engine.create("postgresql+asyncpg://postgres@127.0.0.1:9/postgres")
    try:
        reads = openings.OpeningReads(dead)
        results = await asyncio.gather(
            *(reads.read(brand_id=uuid.uuid4(), job_id=uuid.uuid4()) for _ in range(2)),
            return_exceptions=True,
        )
    finally:
        await dead.dispose()
    assert reads.statements == 1
    for result in results:
        assert isinstance(result, errors.DatabaseUnavailableError), result
        assert result.retryable


@pytest.mark.parametrize("max_batch", [1, 2])
async def test_a_burst_larger_than_a_batch_is_read_in_batches(kit: Kit, max_batch: int) -> None:
    reads = openings.OpeningReads(kit.engine, max_batch=max_batch)
    found = await asyncio.gather(
        *(reads.read(brand_id=uuid.uuid4(), job_id=uuid.uuid4()) for _ in range(4))
    )
    assert [o.sources for o in found] == [[], [], [], []]
    assert reads.statements == 4 // max_batch


class _Stalled:
    """``opening.read_many`` whose first statement hangs until released."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.entered = asyncio.Event()  # the first statement is in flight
        self.release = asyncio.Event()

    async def __call__(self, conn: Any, pairs: Any) -> Any:
        if not self.entered.is_set():
            self.entered.set()
            await self.release.wait()
        return await self.real(conn, pairs)


async def _first_read_stalled(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> tuple[_Stalled, openings.OpeningReads, asyncio.Task[opening.Opening]]:
    """One read whose batch's statement is in flight and hangs until released."""
    stalled = _Stalled(opening.read_many)
    monkeypatch.setattr(opening, "read_many", stalled)
    reads = openings.OpeningReads(kit.engine)
    first = asyncio.create_task(reads.read(brand_id=uuid.uuid4(), job_id=uuid.uuid4()))
    await stalled.entered.wait()
    return stalled, reads, first


async def test_a_stalled_statement_holds_up_its_own_batch_only(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    stalled, reads, first = await _first_read_stalled(kit, monkeypatch)
    later = await asyncio.wait_for(
        reads.read(brand_id=uuid.uuid4(), job_id=uuid.uuid4()), timeout=30
    )
    assert later.sources == []
    assert not first.done()
    stalled.release.set()
    assert (await first).sources == []
    assert reads.statements == 2


async def test_a_batch_interrupted_under_its_jobs_gives_them_a_retryable_error(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, reads, waiting = await _first_read_stalled(kit, monkeypatch)
    for batch in list(reads._sending):  # as the loop's teardown would
        batch.cancel()
    with pytest.raises(errors.DatabaseUnavailableError) as caught:
        await waiting
    assert caught.value.retryable
    assert not waiting.cancelled()
