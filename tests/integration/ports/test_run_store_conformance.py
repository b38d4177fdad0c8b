"""The run-store port's semantics, held against both adapters (conftest.py): the
PostgreSQL adapter the product runs on, and the in-memory store the state machine's unit
tests use. A difference between them is a bug in one of the two."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
import run_store_harness

from kairo_ingest import errors
from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import runs
from kairo_ingest.domain import charges, statuses
from support import outcomes

Harness = run_store_harness.Harness
Status = statuses.RunStatus
ACTOR = "apify~website-content-crawler"
INPUT: dict[str, Any] = {"startUrls": [{"url": "https://acme.example"}], "maxCrawlPages": 3}
PAGE = [
    (0, {"url": "https://acme.example/a", "text": "a"}),
    (1, {"url": "https://acme.example/b", "text": "b"}),
    (2, {"id": "no url"}),
]


async def _intent(h: Harness, attempt: int = 1, account: str = "default") -> runs.Run:
    return await h.store.create_intent(
        h.lease,
        source=h.source,
        actor_id=ACTOR,
        run_input=INPUT,
        cap=10,
        attempt=attempt,
        account=account,
    )


def _info(run_id: str, status: str = Status.RUNNING, **values: Any) -> apify_models.RunInfo:
    base: dict[str, Any] = {"started_at": None, "default_dataset_id": f"ds-{run_id}"}
    base.update(values)
    return apify_models.RunInfo(id=run_id, act_id=ACTOR, status=status, **base)


def _end(status: str = Status.SUCCEEDED, **values: Any) -> runs.End:
    return runs.End(status=status, ended_by="job", **values)


async def _near_now(h: Harness, value: dt.datetime | None) -> bool:
    assert value is not None
    return abs((await h.now() - value).total_seconds()) < 5


async def test_an_intent_is_starting_with_its_exact_input_unsent_and_unbound(
    run_harness: Harness,
) -> None:
    h = run_harness
    run = await _intent(h, account="acme")
    assert (run.status, run.input, run.attempt, run.account, run.item_cap) == (
        Status.STARTING,
        INPUT,
        1,
        "acme",
        10,
    )
    assert (run.apify_run_id, run.sent_at, run.started_at, run.job_id) == (
        None,
        None,
        None,
        h.lease.job_id,
    )
    assert await _near_now(h, run.intent_at)
    assert await h.store.latest_for(job_id=h.lease.job_id, source_id=h.source.id) == run


async def test_an_intent_created_again_after_a_lost_commit_answer_is_the_same_row(
    run_harness: Harness,
) -> None:
    h = run_harness
    first = await _intent(h)
    again = await _intent(h)
    assert again.id == first.id
    newer = await _intent(h, attempt=2)
    assert newer.id != first.id
    latest = await h.store.latest_for(job_id=h.lease.job_id, source_id=h.source.id)
    assert latest is not None
    assert (latest.id, latest.attempt) == (newer.id, 2)


async def test_a_sent_intent_is_not_taken_over_by_a_retried_creation_once_bound(
    run_harness: Harness,
) -> None:
    h = run_harness
    first = await _intent(h)
    await h.store.bind_started(h.lease, first.id, _info("apify-1"), end=None)
    second = await _intent(h)
    assert second.id != first.id, "a bound intent is never handed out as a new one"


async def test_every_write_under_a_lost_lease_raises_and_changes_nothing(
    run_harness: Harness,
) -> None:
    h = run_harness
    run = await _intent(h)
    await h.lose_lease()
    writes = [
        _intent(h, attempt=2),
        h.store.mark_sent(h.lease, run.id),
        h.store.bind_started(h.lease, run.id, _info("apify-1"), end=None),
        h.store.record_end(h.lease, run.id, _end()),
        h.store.mark_start_failed(h.lease, run.id, error_kind="auth", error_summary="x"),
        h.store.release(h.lease, run.id),
        h.store.take_back(h.lease, run.id),
        h.store.mark_timed_out_unended(h.lease, run.id, status="ABORTING"),
        h.store.set_dataset(h.lease, run.id, "ds"),
        h.store.store_page(h.lease, run, platform="web", capability="crawl_pages", page=PAGE),
        h.store.mark_stored(h.lease, run.id),
    ]
    for write in writes:
        error = await outcomes.error_of(write)
        assert isinstance(error, errors.LeaseLostError)
    assert await h.store.latest_for(job_id=h.lease.job_id, source_id=h.source.id) == run
    assert await h.raw_items(run.id) == 0


async def test_marking_a_send_records_the_stores_time(run_harness: Harness) -> None:
    h = run_harness
    run = await _intent(h)
    sent = await h.store.mark_sent(h.lease, run.id)
    assert (sent.id, sent.status) == (run.id, Status.STARTING)
    assert await _near_now(h, sent.sent_at)


async def test_binding_a_run_takes_its_id_dataset_status_and_start(
    run_harness: Harness,
) -> None:
    h = run_harness
    run = await _intent(h)
    started = (await h.now()) - dt.timedelta(seconds=100)
    bound, wrote = await h.store.bind_started(
        h.lease, run.id, _info("apify-1", started_at=started), end=None
    )
    assert wrote is False
    assert (bound.apify_run_id, bound.dataset_id, bound.status, bound.started_at) == (
        "apify-1",
        "ds-apify-1",
        Status.RUNNING,
        started,
    )
    assert 95 < await h.store.seconds_since_start(run.id) < 110


async def test_binding_a_run_without_a_start_time_takes_the_stores_time(
    run_harness: Harness,
) -> None:
    h = run_harness
    run = await _intent(h)
    bound, _ = await h.store.bind_started(h.lease, run.id, _info("apify-1"), end=None)
    assert await _near_now(h, bound.started_at)
    assert 0 <= await h.store.seconds_since_start(run.id) < 5


async def test_binding_a_run_that_already_ended_records_its_end_in_the_same_unit(
    run_harness: Harness,
) -> None:
    h = run_harness
    run = await _intent(h)
    finished = (await h.now()).replace(microsecond=0)
    end = runs.End(
        status=Status.SUCCEEDED,
        ended_by="adoption",
        finished_at=finished,
        usage_total_usd=0.25,
    )
    info = _info("apify-1", Status.SUCCEEDED)
    bound, wrote = await h.store.bind_started(h.lease, run.id, info, end=end)
    assert wrote is True
    assert (bound.apify_run_id, bound.status, bound.ended_by, bound.finished_at) == (
        "apify-1",
        Status.SUCCEEDED,
        "adoption",
        finished,
    )
    assert float(bound.usage_total_usd) == 0.25


async def test_one_apify_run_is_bound_to_one_intent_at_most(run_harness: Harness) -> None:
    h = run_harness
    first = await _intent(h)
    await h.store.bind_started(h.lease, first.id, _info("apify-1"), end=None)
    second = await _intent(h, attempt=2)
    error = await outcomes.error_of(
        h.store.bind_started(h.lease, second.id, _info("apify-1"), end=None)
    )
    assert isinstance(error, errors.DatabaseConstraintError)


async def test_the_first_end_recorded_wins(run_harness: Harness) -> None:
    h = run_harness
    run = await _intent(h)
    await h.store.bind_started(h.lease, run.id, _info("apify-1"), end=None)
    ended, wrote = await h.store.record_end(
        h.lease, run.id, _end(Status.ABORTED, partial_reason="charge_cap", usage_total_usd=0.5)
    )
    assert wrote is True
    assert (ended.status, ended.partial_reason, ended.ended_by) == (
        Status.ABORTED,
        "charge_cap",
        "job",
    )
    assert await _near_now(h, ended.finished_at)
    assert ended.dataset_id == "ds-apify-1", "an end without a dataset keeps the row's"
    again, wrote_again = await h.store.record_end(
        h.lease, run.id, runs.End(status=Status.SUCCEEDED, ended_by="ledger")
    )
    assert wrote_again is False
    assert again == ended


async def test_an_aborted_end_records_the_abort_request(run_harness: Harness) -> None:
    h = run_harness
    run = await _intent(h)
    ended, _ = await h.store.record_end(h.lease, run.id, _end(Status.ABORTED, aborted=True))
    assert await _near_now(h, ended.abort_requested_at)


async def test_a_start_failure_ends_the_intent_now(run_harness: Harness) -> None:
    h = run_harness
    run = await _intent(h)
    failed = await h.store.mark_start_failed(
        h.lease, run.id, error_kind="invalid_input", error_summary="bad input"
    )
    assert (failed.status, failed.error_kind, failed.error_summary) == (
        Status.START_FAILED,
        "invalid_input",
        "bad input",
    )
    assert failed.ended
    assert await _near_now(h, failed.finished_at)
    _, wrote = await h.store.record_end(h.lease, run.id, _end())
    assert wrote is False, "a START_FAILED intent has ended: no end overwrites it"


async def test_a_release_hands_the_run_to_the_ledger_and_a_take_back_returns_it(
    run_harness: Harness,
) -> None:
    h = run_harness
    run = await _intent(h)
    released = await h.store.release(h.lease, run.id)
    assert await _near_now(h, released.released_at)
    assert await _near_now(h, released.ledger_check_at)
    back = await h.store.take_back(h.lease, run.id)
    assert (back.released_at, back.ledger_check_at) == (None, None)


async def test_a_timed_out_run_that_has_not_ended_is_released_as_timed_out(
    run_harness: Harness,
) -> None:
    h = run_harness
    run = await _intent(h)
    await h.store.bind_started(h.lease, run.id, _info("apify-1"), end=None)
    marked = await h.store.mark_timed_out_unended(h.lease, run.id, status="ABORTING")
    assert (marked.status, marked.partial_reason) == (
        "ABORTING",
        charges.PartialReason.TIMED_OUT.value,
    )
    for instant in (marked.abort_requested_at, marked.released_at, marked.ledger_check_at):
        assert await _near_now(h, instant)


async def test_a_dataset_learnt_late_is_set(run_harness: Harness) -> None:
    h = run_harness
    run = await _intent(h)
    assert (await h.store.set_dataset(h.lease, run.id, "ds-late")).dataset_id == "ds-late"


async def test_owned_ids_are_the_bound_runs_of_the_actor_started_in_the_window(
    run_harness: Harness,
) -> None:
    h = run_harness
    now = await h.now()
    old = await _intent(h)
    await h.store.bind_started(
        h.lease, old.id, _info("apify-old", started_at=now - dt.timedelta(hours=2)), end=None
    )
    recent = await _intent(h, attempt=2)
    await h.store.bind_started(
        h.lease, recent.id, _info("apify-new", started_at=now - dt.timedelta(seconds=30)), end=None
    )
    await _intent(h, attempt=3)  # unbound: owns nothing
    since = now - dt.timedelta(minutes=5)
    assert await h.store.owned_apify_run_ids(actor_id=ACTOR, since=since) == {"apify-new"}
    assert await h.store.owned_apify_run_ids(actor_id="other~actor", since=since) == set()
    owned, store_now = await h.store.owned_and_now(actor_id=ACTOR, since=since)
    assert owned == {"apify-new"}
    assert await _near_now(h, store_now)


async def test_a_page_written_twice_stores_its_items_and_counts_once(
    run_harness: Harness,
) -> None:
    h = run_harness
    run = await _intent(h)
    await h.store.bind_started(h.lease, run.id, _info("apify-1"), end=None)
    kwargs: dict[str, Any] = {"platform": "web", "capability": "crawl_pages", "page": PAGE}
    first = await h.store.store_page(h.lease, run, **kwargs)
    assert dataclasses.astuple(first) == (3, 2, 0, 1)
    again = await h.store.store_page(h.lease, run, **kwargs)
    assert dataclasses.astuple(again) == (0, 0, 0, 0)
    assert await h.raw_items(run.id) == 3
    stored = await h.store.mark_stored(h.lease, run.id)
    assert (
        stored.raw_item_count,
        stored.normalized_created,
        stored.items_skipped,
        stored.normalized_item_count,
    ) == (3, 2, 1, 2)
    assert await _near_now(h, stored.raw_stored_at)
    assert stored.normalized_at == stored.raw_stored_at


@pytest.mark.parametrize("pages", [0, 1])
async def test_a_stored_run_counts_at_least_zero_items(run_harness: Harness, pages: int) -> None:
    h = run_harness
    run = await _intent(h)
    for _ in range(pages):
        await h.store.store_page(h.lease, run, platform="web", capability="crawl_pages", page=[])
    stored = await h.store.mark_stored(h.lease, run.id)
    assert stored.raw_item_count == 0
