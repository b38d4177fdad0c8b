"""What a compile job costs in database round trips, counted, not timed.

Round trips are counted from SQLAlchemy's events (:mod:`support.roundtrips`):
each statement, and each BEGIN / COMMIT / ROLLBACK the asyncpg adapter really sends.
The compile job's opening reads (``now()``, the enabled sources, each source's runs)
are one autocommit statement, so an empty compile costs one round trip (its final
write is the worker's, batched with other jobs') and a reused source costs none of its
own. The refreshed source's figure is the pinned price of one Apify run with one page.
"""

from __future__ import annotations

import uuid

from pipeline_kit import Kit

from kairo_ingest.pipeline import compile_job
from kairo_ingest.queue import endings
from support import outcomes, roundtrips

ONE = [("tiktok", "profile_videos", "@acme")]

# A refreshed source with one page: 30 round trips, as
#   opening read (all sources)                     1 (autocommit)
#   run intent: BEGIN, fence, latest run, INSERT, COMMIT   5
#   before the start: owned Apify run ids          1 (autocommit read)
#   start sent (sent_at): BEGIN, fence, UPDATE, COMMIT     4
#   run started: BEGIN, fence, UPDATE, COMMIT      4
#   wait: seconds since start                      1 (autocommit)
#   run finished: BEGIN, fence, UPDATE, COMMIT     4
#   the page: BEGIN, fence, raw items, evidence, counts, COMMIT   6
#   run stored: BEGIN, fence, UPDATE, COMMIT       4
# (it was 40 with every read in BEGIN ... ROLLBACK and the opening reads apart; the
# run ledger added the commit of sent_at before the start request goes out).
REFRESHED_ONE_PAGE = {"begin": 6, "statement": 18, "commit": 6, "rollback": 0}


async def _compile(kit: Kit, brand: object) -> tuple[compile_job.Result, dict[str, int]]:
    lease = await kit.lease(brand)  # type: ignore[arg-type]
    with roundtrips.counting(kit.engine) as counter:
        result = await compile_job.run(kit.deps(), lease)
    await endings.complete_many(kit.engine, [(lease, None)])  # the worker's final write
    return result, counter.snapshot()


async def test_an_empty_compile_is_one_round_trip(kit: Kit) -> None:
    brand = uuid.uuid4()  # no sources
    result, counts = await _compile(kit, brand)
    assert result.error is None
    assert counts == {"begin": 0, "statement": 1, "commit": 0, "rollback": 0}


async def test_a_reused_source_costs_no_round_trip_of_its_own(kit: Kit) -> None:
    brand, _ = await kit.brand(ONE)
    first, _ = await _compile(kit, brand)
    assert len(first.evidence_status["refreshed"]) == 1
    again, counts = await _compile(kit, brand)
    assert len(again.evidence_status["reused"]) == 1
    assert counts == {"begin": 0, "statement": 1, "commit": 0, "rollback": 0}


async def test_a_refreshed_source_with_one_page_costs_a_pinned_number_of_round_trips(
    kit: Kit,
) -> None:
    brand, _ = await kit.brand(ONE)
    result, counts = await _compile(kit, brand)
    refreshed = outcomes.only(result.evidence_status["refreshed"])
    assert 0 < refreshed["raw_items"] <= kit.deps().page_size  # one page
    assert counts == REFRESHED_ONE_PAGE
