"""The source run's state machine (``pipeline/source_run.py``), branch by branch, on the
in-memory run store and a scripted Apify: no PostgreSQL, no HTTP. Each test states the
row it starts from and asserts what the store and Apify saw."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from kairo_ingest import errors
from kairo_ingest.apify import models as apify_models
from kairo_ingest.apify import reconcile
from kairo_ingest.db import runs, sources
from kairo_ingest.domain import charges, evidence, registry, statuses
from kairo_ingest.pipeline import budget as budget_module
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.pipeline import source_run
from kairo_ingest.queue import jobs as queue_jobs
from support import fake_apify, memory_queue, memory_runs, outcomes

Status = statuses.RunStatus
Bucket = statuses.EvidenceBucket
SPEC = registry.find_spec("web", "crawl_pages")
assert SPEC is not None


@dataclasses.dataclass
class Kit:
    clock: memory_queue.ManualClock
    store: memory_runs.MemoryRunStore
    api: fake_apify.FakeApify
    lease: queue_jobs.Lease
    source: sources.Source

    def deps(self, **overrides: Any) -> deps_module.Deps:
        values: dict[str, Any] = {
            "engine": None,  # never reached: the run store is in memory
            "apify": self.api,
            "disabled_capabilities": frozenset(),
            "freshness_ttl": dt.timedelta(hours=24),
            "run_deadline_seconds": 600.0,
            "source_concurrency": 1,
            "run_slots": asyncio.Semaphore(1),
            "clock": self.clock,
            "run_store": self.store,
        }
        values.update(overrides)
        return deps_module.Deps(**values)

    async def run(self, run: runs.Run | None, **overrides: Any) -> evidence.Entry:
        assert SPEC is not None
        return await source_run.run(
            self.deps(**overrides), self.lease, self.source, SPEC, reason="test", run=run
        )

    async def resume(self, **overrides: Any) -> evidence.Entry:
        """A later call of the job, from whatever its latest run is."""
        latest = await self.store.latest_for(job_id=self.lease.job_id, source_id=self.source.id)
        return await self.run(latest, **overrides)

    @property
    def only_run(self) -> runs.Run:
        return outcomes.only(self.store.runs_of(self.lease.job_id), "run")

    def row(self, **values: Any) -> runs.Run:
        """A run row of this job and source, as a crash or an earlier attempt left it."""
        assert SPEC is not None
        now = self.clock.now()
        base: dict[str, Any] = {
            "id": uuid.uuid4(),
            "job_id": self.lease.job_id,
            "source_connection_id": self.source.id,
            "brand_id": self.source.brand_id,
            "actor_id": SPEC.actor_id,
            "input": self.input,
            "attempt": 1,
            "apify_run_id": None,
            "dataset_id": None,
            "status": Status.STARTING,
            "intent_at": now,
            "started_at": None,
            "finished_at": None,
            "item_cap": 10,
            "raw_item_count": None,
            "raw_stored_at": None,
            "normalized_item_count": None,
            "normalized_created": None,
            "normalized_updated": None,
            "items_skipped": None,
            "normalized_at": None,
            "error_kind": None,
            "error_summary": None,
        }
        base.update(values)
        return self.store.put(runs.Run(**base))

    def bound_row(self, info: apify_models.RunInfo, **values: Any) -> runs.Run:
        """A row bound to the Apify run ``info``."""
        bound: dict[str, Any] = {
            "apify_run_id": info.id,
            "dataset_id": info.default_dataset_id,
            "status": info.status,
            "started_at": info.started_at,
            "sent_at": info.started_at,
        }
        return self.row(**{**bound, **values})

    @property
    def input(self) -> dict[str, Any]:
        assert SPEC is not None
        return SPEC.build_input(self.source.identifier, self.source.settings, 10)


@pytest.fixture
def kit() -> Kit:
    clock = memory_queue.ManualClock()
    store = memory_runs.MemoryRunStore(clock)
    api = fake_apify.FakeApify(clock)
    lease = queue_jobs.Lease(
        job_id=uuid.uuid4(),
        token=uuid.uuid4(),
        owner="test",
        kind="compile",
        brand_id=uuid.uuid4(),
        attempts=1,
        max_attempts=3,
        params={},
        attempt_number=1,
    )
    store.hold(lease)
    assert lease.brand_id is not None
    source = sources.Source(
        id=uuid.uuid4(),
        brand_id=lease.brand_id,
        platform="web",
        capability="crawl_pages",
        identifier="https://acme.example/",
        enabled=True,
        settings={},
        created_at=clock.now(),
        updated_at=clock.now(),
    )
    return Kit(clock, store, api, lease, source)


HAPPY_WRITES = [
    "create_intent",
    "mark_sent",
    "bind_started",
    "record_end",
    "store_page",
    "mark_stored",
]


def _writes(kit: Kit) -> list[str]:
    return [c for c in kit.store.calls if c in {*HAPPY_WRITES, "release", "take_back"}]


def _refreshed(entry: evidence.Entry) -> evidence.RunFacts:
    assert (entry.bucket, entry.error) == (Bucket.REFRESHED, None)
    assert entry.run is not None
    return entry.run


# ---------------------------------------------------------------------- new intents


async def test_without_a_row_an_intent_is_recorded_then_started_waited_and_fetched(
    kit: Kit,
) -> None:
    seen_at_start: list[list[tuple[str, object]]] = []
    kit.api.on_start = lambda: seen_at_start.append(
        [(r.status, r.sent_at) for r in kit.store.runs_of(kit.lease.job_id)]
    )

    facts = _refreshed(await kit.run(None, run_max_charge_usd=1.5))

    run = kit.only_run
    assert seen_at_start == [[(Status.STARTING, kit.clock.now())]], (
        "the intent and its sent_at are committed before Apify hears of the start"
    )
    assert _writes(kit) == HAPPY_WRITES
    assert (run.status, run.attempt, run.input, run.raw_item_count) == (
        Status.SUCCEEDED,
        1,
        kit.input,
        3,
    )
    assert run.raw_stored_at is not None
    assert (facts.apify_run_id, facts.raw_items) == (run.apify_run_id, 3)
    assert kit.api.count("start_run") == 1
    assert kit.api.start_kwargs[0]["max_total_charge_usd"] == 1.5
    assert kit.api.start_kwargs[0]["max_items"] == run.item_cap
    assert len(kit.store.raw) == 3


@pytest.mark.parametrize("ended", [Status.START_FAILED, Status.FAILED])
async def test_a_last_run_that_ended_with_nothing_to_keep_gets_a_new_intent(
    kit: Kit, ended: str
) -> None:
    last = kit.row(status=ended, attempt=2, finished_at=kit.clock.now())
    kit.clock.advance(1)

    _refreshed(await kit.run(last))

    newest = kit.store.runs_of(kit.lease.job_id)[-1]
    assert (newest.attempt, newest.status) == (3, Status.SUCCEEDED)
    assert kit.store.run(last.id) == last, "the ended run is left as it was"
    assert kit.api.count("start_run") == 1


# ---------------------------------------------------------------------- resumed intents


async def test_a_sent_intent_adopts_the_run_whose_input_matches_and_never_starts(
    kit: Kit,
) -> None:
    intent = kit.row(sent_at=kit.clock.now())
    kit.api.add_run("someone/else", kit.input)
    kit.api.add_run(SPEC.actor_id, {"startUrls": [{"url": "https://other.example"}]})
    ours = kit.api.add_run(SPEC.actor_id, {**kit.input, "defaulted": True})

    _refreshed(await kit.run(intent))

    assert kit.api.count("start_run") == 0
    run = kit.store.run(intent.id)
    assert (run.apify_run_id, run.status) == (ours.id, Status.SUCCEEDED)


async def test_a_sent_intent_adopts_a_run_that_already_ended_with_its_end_and_cost(
    kit: Kit,
) -> None:
    intent = kit.row(sent_at=kit.clock.now())
    ours = kit.api.add_run(SPEC.actor_id, kit.input, status=Status.SUCCEEDED)

    _refreshed(await kit.run(intent))

    run = kit.store.run(intent.id)
    assert (run.apify_run_id, run.status, run.ended_by) == (ours.id, Status.SUCCEEDED, "adoption")
    assert (run.finished_at, run.usage_total_usd) == (ours.finished_at, ours.usage_total_usd)
    assert kit.api.count("wait_or_abort") == 0
    assert kit.api.count("start_run") == 0


async def test_a_sent_intent_with_nothing_to_adopt_settles_from_its_send_then_starts_once(
    kit: Kit,
) -> None:
    intent = kit.row()  # recorded, then it waited for a slot before its send
    kit.clock.advance(100)
    kit.store.put(dataclasses.replace(intent, sent_at=kit.clock.now()))
    kit.clock.advance(2)

    _refreshed(await kit.resume())

    assert kit.api.sleeps == reconcile.settle_left(2.0), (
        "settling is timed from the last send, not from the intent"
    )
    assert kit.api.count("start_run") == 1
    assert kit.store.run(intent.id).status == Status.SUCCEEDED


async def test_a_sent_intent_long_ago_looks_once_without_settling_then_starts_once(
    kit: Kit,
) -> None:
    intent = kit.row(sent_at=kit.clock.now())
    kit.clock.advance(300)

    _refreshed(await kit.run(intent))

    assert (kit.api.sleeps, kit.api.count("start_run")) == ([], 1)


async def test_an_intent_never_sent_starts_without_looking(kit: Kit) -> None:
    intent = kit.row()

    _refreshed(await kit.run(intent))

    assert kit.api.count("list_runs") == 0
    assert kit.api.count("start_run") == 1
    assert kit.store.run(intent.id).attempt == 1, "the same intent, not a new one"
    assert "create_intent" not in kit.store.calls


# ---------------------------------------------------------------------- runs in flight


class _Tenants:
    """Accounts by name, each with its own Apify (``tenants.Tenants``, without a database)."""

    def __init__(self, apis: dict[str, fake_apify.FakeApify]) -> None:
        self.apis = apis
        self.resolved: list[str] = []

    async def resolve(self, account: str) -> Any:
        self.resolved.append(account)
        return _Tenant(account, self.apis[account])


@dataclasses.dataclass
class _Tenant:
    account: str
    api: fake_apify.FakeApify


async def test_a_run_in_flight_is_waited_on_again_with_the_account_that_started_it(
    kit: Kit,
) -> None:
    old_api, new_api = fake_apify.FakeApify(kit.clock), fake_apify.FakeApify(kit.clock)
    started = old_api.add_run(SPEC.actor_id, kit.input)
    in_flight = kit.bound_row(started, account="old", released_at=kit.clock.now())
    kit.source = dataclasses.replace(kit.source, account="new")
    tenants = _Tenants({"old": old_api, "new": new_api})

    _refreshed(await kit.run(in_flight, tenants=cast(Any, tenants)))

    assert tenants.resolved == ["old"]
    assert new_api.calls == []
    assert [c for c, _ in old_api.calls] == ["wait_or_abort", "iter_dataset_items"]
    assert "take_back" in kit.store.calls, "a run released to the ledger is followed again"
    run = kit.store.run(in_flight.id)
    assert (run.status, run.released_at, run.ended_by) == (Status.SUCCEEDED, None, "job")


async def test_a_wait_that_fails_releases_the_run_to_the_ledger(kit: Kit) -> None:
    started = kit.api.add_run(SPEC.actor_id, kit.input)
    in_flight = kit.bound_row(started)
    kit.api.wait_script.append(errors.ApifyAuthError("token refused", status_code=401))

    entry = await kit.run(in_flight)

    assert (entry.bucket, entry.error_kind) == (Bucket.FAILED, "auth")
    run = kit.store.run(in_flight.id)
    assert (run.status, run.released_at, run.ledger_check_at) == (
        Status.RUNNING,
        kit.clock.now(),
        kit.clock.now(),
    )


async def test_a_run_aborted_at_the_deadline_keeps_its_paid_items_as_timed_out(
    kit: Kit,
) -> None:
    started = kit.api.add_run(SPEC.actor_id, kit.input)
    in_flight = kit.bound_row(started)
    aborted = dataclasses.replace(
        started, status=Status.ABORTED, finished_at=kit.clock.now(), usage_total_usd=0.2
    )
    kit.api.wait_script.append(apify_models.RunEnd(aborted, deadline_passed=True))

    facts = _refreshed(await kit.run(in_flight))

    run = kit.store.run(in_flight.id)
    assert (run.status, run.partial_reason, run.usage_total_usd) == (
        Status.ABORTED,
        charges.PartialReason.TIMED_OUT,
        0.2,
    )
    assert (facts.partial_reason, facts.raw_items) == (charges.PartialReason.TIMED_OUT, 3)
    assert run.abort_requested_at is not None


async def test_a_run_aborted_at_the_deadline_that_has_not_ended_goes_to_the_ledger(
    kit: Kit,
) -> None:
    started = kit.api.add_run(SPEC.actor_id, kit.input)
    in_flight = kit.bound_row(started)
    aborting = dataclasses.replace(started, status="ABORTING")
    kit.api.wait_script.append(apify_models.RunEnd(aborting, deadline_passed=True))

    entry = await kit.run(in_flight)

    assert (entry.bucket, entry.error_kind) == (Bucket.FAILED, "timeout")
    run = kit.store.run(in_flight.id)
    assert (run.status, run.partial_reason, run.released_at) == (
        "ABORTING",
        charges.PartialReason.TIMED_OUT,
        kit.clock.now(),
    )
    assert kit.store.raw == {}


# ---------------------------------------------------------------------- ended runs


async def test_a_succeeded_run_without_stored_items_is_fetched_without_apify_starting(
    kit: Kit,
) -> None:
    done = kit.api.add_run(SPEC.actor_id, kit.input, status=Status.SUCCEEDED)
    ended = kit.bound_row(done, finished_at=done.finished_at)

    _refreshed(await kit.run(ended))

    assert [c for c, _ in kit.api.calls] == ["iter_dataset_items"]
    assert kit.store.run(ended.id).raw_item_count == 3


async def test_a_run_with_stored_items_needs_nothing(kit: Kit) -> None:
    done = kit.api.add_run(SPEC.actor_id, kit.input, status=Status.SUCCEEDED)
    stored = kit.bound_row(done, raw_stored_at=kit.clock.now(), raw_item_count=3)

    facts = _refreshed(await kit.run(stored))

    assert (kit.api.calls, kit.store.calls) == ([], [])
    assert facts.raw_items == 3


async def test_a_run_stopped_at_its_charge_cap_is_kept_and_fetched_not_run_again(
    kit: Kit,
) -> None:
    capped = kit.api.add_run(SPEC.actor_id, kit.input, status=Status.ABORTED)
    ended = kit.bound_row(capped, partial_reason=charges.PartialReason.CHARGE_CAP.value)

    facts = _refreshed(await kit.run(ended))

    assert kit.api.count("start_run") == 0
    assert (facts.partial_reason, facts.raw_items) == (charges.PartialReason.CHARGE_CAP, 3)


async def test_a_succeeded_run_recorded_without_its_dataset_asks_apify_for_it(
    kit: Kit,
) -> None:
    done = kit.api.add_run(SPEC.actor_id, kit.input, status=Status.SUCCEEDED)
    ended = kit.bound_row(done, dataset_id=None)

    _refreshed(await kit.run(ended))

    assert kit.store.run(ended.id).dataset_id == done.default_dataset_id
    assert kit.store.calls.count("set_dataset") == 1


# ---------------------------------------------------------------------- start failures


class _CappedBudget:
    """An account at its daily cap (``budget.Budget``, without a database): a new run gets
    no slot; a run already on Apify (``force``) takes its slot at once."""

    memory_mbytes = 1024

    def __init__(self) -> None:
        self.asked: list[bool] = []
        self.resized: list[int] = []

    @contextlib.asynccontextmanager
    async def slot(self, ask: budget_module.Ask) -> AsyncIterator[None]:
        self.asked.append(ask.force)
        if not ask.force:
            raise errors.BudgetExceededError("daily cap reached", retry_after_seconds=60.0)
        yield

    async def resize(self, ask: budget_module.Ask, memory_mbytes: int) -> None:
        self.resized.append(memory_mbytes)


def _capped(kit: Kit, budget: _CappedBudget | None = None) -> dict[str, Any]:
    return {
        "budget": cast(Any, budget or _CappedBudget()),
        "tenants": cast(Any, _Tenants({"default": kit.api})),
    }


async def test_a_daily_cap_before_the_start_fails_the_intent_and_snoozes(kit: Kit) -> None:
    entry = await kit.run(None, **_capped(kit))

    assert (entry.bucket, entry.error_kind, entry.snooze) == (
        Bucket.FAILED,
        "budget_exceeded",
        True,
    )
    run = kit.only_run
    assert (run.status, run.error_kind, run.sent_at) == (
        Status.START_FAILED,
        "budget_exceeded",
        None,
    )
    assert kit.api.calls == []


async def test_a_sent_intent_at_the_daily_cap_adopts_its_run_instead_of_failing(
    kit: Kit,
) -> None:
    intent = kit.row(sent_at=kit.clock.now())
    ours = kit.api.add_run(SPEC.actor_id, kit.input, memory_mbytes=4096)
    budget = _CappedBudget()

    _refreshed(await kit.run(intent, **_capped(kit, budget)))

    run = kit.store.run(intent.id)
    assert (run.apify_run_id, run.status) == (ours.id, Status.SUCCEEDED)
    assert kit.api.count("start_run") == 0
    assert (budget.asked, budget.resized) == ([True], [4096]), (
        "the adopted run takes its slot at once, counted at the memory Apify gave it"
    )


async def test_a_run_taken_over_in_flight_counts_the_memory_apify_gave_it(kit: Kit) -> None:
    started = kit.api.add_run(SPEC.actor_id, kit.input, memory_mbytes=4096)
    in_flight = kit.bound_row(started)
    budget = _CappedBudget()

    _refreshed(await kit.run(in_flight, **_capped(kit, budget)))

    assert (budget.asked, budget.resized) == ([True], [4096])


async def test_a_definite_start_refusal_marks_the_intent_start_failed(kit: Kit) -> None:
    refusal = errors.ApifyInvalidInputError("bad input", status_code=400)
    kit.api.start_script.append(fake_apify.StartOutcome(refusal))

    entry = await kit.run(None)

    assert (entry.bucket, entry.error_kind) == (Bucket.FAILED, "invalid_input")
    run = kit.only_run
    assert (run.status, run.error_kind, run.finished_at) == (
        Status.START_FAILED,
        "invalid_input",
        kit.clock.now(),
    )
    assert kit.api.count("list_runs") == 0, "a refusal proves no run exists"


async def test_an_unknown_start_with_no_run_to_adopt_stays_starting(kit: Kit) -> None:
    for _ in range(2):
        kit.api.start_script.append(
            fake_apify.StartOutcome(errors.ApifyStartUnknownError("connection reset"))
        )

    entry = await kit.run(None)

    assert (entry.bucket, entry.retryable) == (Bucket.FAILED, True)
    run = kit.only_run
    assert (run.status, run.apify_run_id, run.finished_at) == (Status.STARTING, None, None)
    assert run.sent_at is not None
    assert kit.api.count("start_run") == 2, "the first send and one re-send, no more"
    assert kit.api.runs == {}


async def test_an_unknown_start_whose_run_exists_adopts_it_instead_of_starting_again(
    kit: Kit,
) -> None:
    lost = errors.ApifyStartUnknownError("answer lost")
    kit.api.start_script.append(fake_apify.StartOutcome(lost, created=True))

    _refreshed(await kit.run(None))

    assert kit.api.count("start_run") == 1
    assert kit.only_run.apify_run_id == outcomes.only(kit.api.runs, "Apify run")


# ---------------------------------------------------------------------- lease and crashes


async def test_a_lost_lease_ends_the_job_and_apify_hears_nothing(kit: Kit) -> None:
    kit.store.lose(kit.lease)

    with pytest.raises(errors.LeaseLostError):
        await kit.run(None)

    assert kit.api.calls == []
    assert kit.store.rows == {}


async def test_a_lease_lost_while_waiting_ends_the_job_with_the_run_left_to_the_ledger(
    kit: Kit,
) -> None:
    def lose() -> None:
        kit.store.lose(kit.lease)

    kit.api.on_start = lose

    with pytest.raises(errors.LeaseLostError):
        await kit.run(None)

    run = kit.only_run
    assert (run.status, run.apify_run_id) == (Status.STARTING, None), (
        "nothing is written under a lost lease"
    )
    assert kit.api.count("start_run") == 1


@pytest.mark.parametrize("crash_after", range(1, len(HAPPY_WRITES) + 1))
async def test_a_crash_after_any_write_is_resumed_without_a_second_apify_run(
    kit: Kit, crash_after: int
) -> None:
    kit.store.crash_after_writes = crash_after
    with pytest.raises(memory_runs.Crash):
        await kit.run(None)
    kit.clock.advance(5)

    _refreshed(await kit.resume())

    assert kit.api.count("start_run") == 1
    run = kit.only_run
    assert (run.status, run.raw_item_count) == (Status.SUCCEEDED, 3)
    assert run.raw_stored_at is not None
    assert len(kit.store.raw) == 3
