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

from pipeline_kit import TOKEN, Kit

from kairo_ingest import config
from kairo_ingest.pipeline import compile_job
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.queue import endings
from kairo_ingest.service import handlers
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

# The same source with the pipeline as `run` builds it (the run budget and the tenants on):
# two transactions more, taking the run's slot and giving it back, 44 in all
# (docs/benchmarks.md, "Compile cost").
REFRESHED_ONE_PAGE_AS_RUN_BUILDS_IT = {"begin": 8, "statement": 28, "commit": 8, "rollback": 0}


async def _compile(
    kit: Kit, brand: object, deps: deps_module.Deps | None = None
) -> tuple[compile_job.Result, dict[str, int]]:
    lease = await kit.lease(brand)  # type: ignore[arg-type]
    with roundtrips.counting(kit.engine) as counter:
        result = await compile_job.run(deps or kit.deps(), lease)
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


async def test_with_the_budget_and_the_tenants_on_a_refreshed_source_costs_two_transactions_more(
    kit: Kit,
) -> None:
    settings = config.Settings(apify_token=TOKEN, apify_base_url=kit.apify.base_url)
    deps = handlers.pipeline_deps(settings, kit.engine, kit.apify)
    assert deps.budget is not None
    assert deps.tenants is not None
    try:
        brand, _ = await kit.brand(ONE)
        result, counts = await _compile(kit, brand, deps)
    finally:
        await deps.tenants.aclose()
    outcomes.only(result.evidence_status["refreshed"])
    assert counts == REFRESHED_ONE_PAGE_AS_RUN_BUILDS_IT
