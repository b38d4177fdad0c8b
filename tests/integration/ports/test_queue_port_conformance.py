"""The queue port's semantics, held against both adapters (conftest.py): the PostgreSQL
adapter the product runs on, and the in-memory queue the worker's unit tests use. A
difference between them is a bug in one of the two."""

from __future__ import annotations

import random
import uuid

import port_harness
import pytest

from kairo_ingest import errors
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.domain import statuses
from kairo_ingest.queue import endings
from support import outcomes

LEASE = 30.0
OWNER = "worker-a"
Status = statuses.JobStatus
Harness = port_harness.Harness


async def _claim(h: Harness, limit: int = 1, owner: str = OWNER) -> list[endings.Lease]:
    return await h.queue.claim(owner=owner, limit=limit, lease_seconds=LEASE, kinds=None)


async def _fail(h: Harness, lease: endings.Lease, error: BaseException) -> object:
    return await h.queue.fail(
        lease,
        error,
        base_seconds=10.0,
        cap_seconds=10.0,
        snooze_seconds=60.0,
        rng=random.Random(1),
    )


async def test_a_claim_takes_the_lowest_priority_value_first_then_the_oldest(
    harness: Harness,
) -> None:
    first = await harness.enqueue(priority=0)
    second = await harness.enqueue(priority=0)
    urgent = await harness.enqueue(priority=-5)
    order = [lease.job_id for _ in range(3) for lease in await _claim(harness)]
    assert order == [urgent, first, second]
    assert await _claim(harness) == []


async def test_a_claim_leases_the_job_under_a_fresh_token_and_counts_the_attempt(
    harness: Harness,
) -> None:
    job_id = await harness.enqueue()
    lease = outcomes.only(await _claim(harness, limit=5), "lease")
    assert (lease.job_id, lease.owner, lease.attempts, lease.attempt_number) == (
        job_id,
        OWNER,
        1,
        1,
    )
    job = await harness.job(job_id)
    assert (job.status, job.attempts, job.claims, job.lease_token) == (
        Status.RUNNING,
        1,
        1,
        lease.token,
    )
    assert job.lease_left_seconds is not None
    assert LEASE - 5 < job.lease_left_seconds <= LEASE
    assert await _claim(harness, owner="worker-b") == [], "a held job is claimed once"


async def test_a_claim_takes_only_the_kinds_asked_for(harness: Harness) -> None:
    await harness.enqueue("a")
    wanted = await harness.enqueue("b")
    leases = await harness.queue.claim(owner=OWNER, limit=5, lease_seconds=LEASE, kinds=["b"])
    assert [lease.job_id for lease in leases] == [wanted]


async def test_a_completion_under_the_lease_succeeds_the_job(harness: Harness) -> None:
    job_id = await harness.enqueue()
    lease = outcomes.only(await _claim(harness), "lease")
    assert await harness.queue.complete_many([(lease, {"ok": True})]) == {job_id}
    job = await harness.job(job_id)
    assert (job.status, job.lease_token) == (Status.SUCCEEDED, None)
    assert await harness.queue.complete_many([(lease, None)]) == set(), "ends once"


async def test_every_write_under_a_stale_token_is_refused(harness: Harness) -> None:
    """The lease expired, the reaper requeued the job and another worker claimed it: the
    first holder's beat, completion, failure and release all change nothing."""
    job_id = await harness.enqueue()
    stale = outcomes.only(await _claim(harness), "lease")
    await harness.advance(LEASE + 1)
    assert await harness.queue.reap(base_seconds=1.0, cap_seconds=1.0) == (1, 0)
    await harness.advance(2)
    assert await harness.queue.promote() == 1
    fresh = outcomes.only(await _claim(harness, owner="worker-b"), "lease")
    assert fresh.token != stale.token

    beat = await harness.queue.beat([stale], LEASE)
    assert beat.lost == {job_id}
    assert not beat.extended
    assert await harness.queue.complete_many([(stale, None)]) == set()
    assert await _fail(harness, stale, errors.HandlerError("boom")) is None
    assert await harness.queue.release([stale]) == 0
    assert await harness.queue.give_up([stale]) == 0
    assert await harness.queue.stop_cancelled([stale]) == 0
    job = await harness.job(job_id)
    assert (job.status, job.lease_token) == (Status.RUNNING, fresh.token)

    assert await harness.queue.complete_many([(fresh, None)]) == {job_id}
    assert (await harness.job(job_id)).status == Status.SUCCEEDED


async def test_a_beat_extends_a_held_lease_so_the_reaper_leaves_it(harness: Harness) -> None:
    job_id = await harness.enqueue()
    lease = outcomes.only(await _claim(harness), "lease")
    await harness.advance(LEASE - 5)
    beat = await harness.queue.beat([lease], LEASE)
    assert beat.extended == {job_id}
    assert not beat.lost
    await harness.advance(10)  # past the first expiry, within the extended one
    assert await harness.queue.reap(base_seconds=1.0, cap_seconds=1.0) == (0, 0)
    assert (await harness.job(job_id)).status == Status.RUNNING


async def test_a_failed_attempt_waits_its_backoff_then_the_promoter_makes_it_ready(
    harness: Harness,
) -> None:
    job_id = await harness.enqueue()
    lease = outcomes.only(await _claim(harness), "lease")
    assert await _fail(harness, lease, errors.HandlerError("boom")) is retry_rules.Action.RETRY
    job = await harness.job(job_id)
    assert (job.status, job.attempts, job.deferred) == (Status.PENDING, 1, True)
    # base = cap = 10 s, jitter floor one half: the backoff is in [5, 10] seconds.
    assert 4 < job.ready_in_seconds <= 10
    assert await _claim(harness) == []
    assert not await harness.queue.has_ready_or_running()
    waiting = await harness.queue.waiting_on_backoff()
    assert waiting.jobs == 1
    assert waiting.next_at is not None

    await harness.advance(11)
    assert await _claim(harness) == [], "a deferred job waits for the promoter"
    assert await harness.queue.promote() == 1
    again = outcomes.only(await _claim(harness), "lease")
    assert (again.job_id, again.attempts, again.attempt_number) == (job_id, 2, 2)


async def test_the_last_attempt_fails_the_job_for_good(harness: Harness) -> None:
    job_id = await harness.enqueue(max_attempts=2)
    first = outcomes.only(await _claim(harness), "lease")
    assert await _fail(harness, first, errors.HandlerError("boom")) is retry_rules.Action.RETRY
    await harness.advance(11)
    await harness.queue.promote()
    second = outcomes.only(await _claim(harness), "lease")
    assert await _fail(harness, second, errors.HandlerError("boom")) is retry_rules.Action.FAIL
    job = await harness.job(job_id)
    assert (job.status, job.attempts, job.last_error_kind) == (Status.FAILED, 2, "internal")
    await harness.advance(60)
    await harness.queue.promote()
    assert await _claim(harness) == []


async def test_a_permanent_error_fails_the_job_at_once(harness: Harness) -> None:
    job_id = await harness.enqueue(max_attempts=5)
    lease = outcomes.only(await _claim(harness), "lease")
    permanent = errors.HandlerError("bad input", retryable=False)
    assert await _fail(harness, lease, permanent) is retry_rules.Action.FAIL
    assert (await harness.job(job_id)).status == Status.FAILED


async def test_a_snooze_refunds_the_attempt_and_waits_the_snooze(harness: Harness) -> None:
    job_id = await harness.enqueue()
    lease = outcomes.only(await _claim(harness), "lease")
    not_now = errors.ApifyNotNowError("rate limited")
    assert await _fail(harness, lease, not_now) is retry_rules.Action.SNOOZE
    job = await harness.job(job_id)
    assert (job.status, job.attempts, job.snoozes, job.deferred) == (Status.PENDING, 0, 1, True)
    assert 55 < job.ready_in_seconds <= 60


@pytest.mark.parametrize("ending", ["release", "give_up"])
async def test_a_release_or_give_up_refunds_the_attempt_and_is_ready_at_once(
    harness: Harness, ending: str
) -> None:
    job_id = await harness.enqueue()
    lease = outcomes.only(await _claim(harness), "lease")
    assert await getattr(harness.queue, ending)([lease]) == 1
    job = await harness.job(job_id)
    assert (job.status, job.attempts, job.interruptions, job.deferred) == (
        Status.PENDING,
        0,
        1,
        False,
    )
    again = outcomes.only(await _claim(harness), "lease")
    assert (again.attempts, again.attempt_number) == (1, 2)


async def test_the_interruption_cap_fails_a_job_that_keeps_wedging_its_worker(
    harness: Harness,
) -> None:
    job_id = await harness.enqueue()
    caps = endings.Caps(max_interruptions=2, max_snoozes=100)
    assert await harness.queue.release(await _claim(harness), caps=caps) == 1
    assert (await harness.job(job_id)).status == Status.PENDING
    assert await harness.queue.release(await _claim(harness), caps=caps) == 1
    job = await harness.job(job_id)
    assert (job.status, job.interruptions) == (Status.FAILED, 2)


async def test_the_reaper_requeues_an_expired_lease_with_a_backoff_and_a_refund(
    harness: Harness,
) -> None:
    job_id = await harness.enqueue()
    await _claim(harness)
    await harness.advance(LEASE - 1)
    assert await harness.queue.reap(base_seconds=8.0, cap_seconds=8.0) == (0, 0)
    await harness.advance(2)
    assert await harness.queue.reap(base_seconds=8.0, cap_seconds=8.0) == (1, 0)
    job = await harness.job(job_id)
    assert (job.status, job.attempts, job.interruptions, job.deferred) == (
        Status.PENDING,
        0,
        1,
        True,
    )
    assert 3 < job.ready_in_seconds <= 8


async def test_a_hand_back_returns_only_the_owners_unheld_claims(harness: Harness) -> None:
    for _ in range(3):
        await harness.enqueue()
    orphan, kept = await _claim(harness, limit=2)
    others = outcomes.only(await _claim(harness, owner="worker-b"), "lease")
    assert await harness.queue.hand_back(owner=OWNER, held={kept.token}) == 1
    orphaned = await harness.job(orphan.job_id)
    assert (orphaned.status, orphaned.attempts, orphaned.interruptions) == (Status.PENDING, 0, 0)
    assert (await harness.job(kept.job_id)).status == Status.RUNNING
    assert (await harness.job(others.job_id)).status == Status.RUNNING
    assert await harness.queue.has_ready_or_running()


async def test_an_operators_cancel_reaches_the_holder_through_the_beat(harness: Harness) -> None:
    job_id = await harness.enqueue()
    lease = outcomes.only(await _claim(harness), "lease")
    await harness.request_cancel(job_id)
    beat = await harness.queue.beat([lease], LEASE)
    assert beat.cancelling == {job_id}
    assert await harness.queue.stop_cancelled([lease]) == 1
    job = await harness.job(job_id)
    assert (job.status, job.last_error_kind) == (Status.CANCELLED, "cancelled")


async def test_one_running_job_per_brand_and_kind(harness: Harness) -> None:
    brand = uuid.uuid4()
    first = await harness.enqueue(brand_id=brand)
    lease = outcomes.only(await _claim(harness), "lease")
    assert lease.job_id == first
    follow_up = await harness.enqueue(brand_id=brand)
    assert await _claim(harness) == [], "the brand's follow-up waits for its running job"
    await harness.queue.complete_many([(lease, None)])
    assert [x.job_id for x in await _claim(harness)] == [follow_up]


async def test_a_requeued_job_whose_brand_has_a_pending_follow_up_is_superseded(
    harness: Harness,
) -> None:
    """A job that would go back to pending beside its brand's pending follow-up ends
    cancelled instead: one pending job per brand and kind."""
    brand = uuid.uuid4()
    first = await harness.enqueue(brand_id=brand)
    lease = outcomes.only(await _claim(harness), "lease")
    follow_up = await harness.enqueue(brand_id=brand)
    assert await _fail(harness, lease, errors.HandlerError("boom")) is retry_rules.Action.RETRY
    assert (await harness.job(first)).status == Status.CANCELLED
    assert (await harness.job(follow_up)).status == Status.PENDING
