"""Failed attempts as stored by ``jobs.fail``: backoff, permanence, snooze, exhaustion."""

from __future__ import annotations

import random

import queue_testkit as kit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.domain import retry
from kairo_ingest.queue import endings, jobs
from support import outcomes


class _Top(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


async def _claimed(engine: sa_async.AsyncEngine, *, max_attempts: int = 3) -> jobs.Lease:
    await jobs.enqueue(engine, kind="k", brand_id=None, max_attempts=max_attempts)
    return outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))


async def _fail(
    engine: sa_async.AsyncEngine, lease: jobs.Lease, error: BaseException, **kw: object
) -> retry.Action | None:
    options: dict[str, object] = {
        "base_seconds": 30.0,
        "cap_seconds": 900.0,
        "snooze_seconds": 45.0,
        "rng": _Top(),
    }
    options.update(kw)
    return await endings.fail(engine, lease, error, **options)  # type: ignore[arg-type]


async def test_first_retry_delay_is_at_most_the_base_not_double_it(
    engine: sa_async.AsyncEngine,
) -> None:
    """The old runner waited 30 * 2**attempts = 60 s after the first attempt."""
    lease = await _claimed(engine)
    assert await _fail(engine, lease, errors.ApifyTransientError("502")) is retry.Action.RETRY
    job = await kit.row(engine, lease.job_id)
    assert (job.status, job.attempts, job.lease_token) == ("pending", 1, None)
    assert (job.last_error, job.last_error_kind) == ("502", "apify_transient")
    assert await kit.delay_of(engine, lease.job_id) == 30.0


async def test_retry_delay_is_capped(engine: sa_async.AsyncEngine) -> None:
    lease = await _claimed(engine, max_attempts=50)
    await kit.execute(engine, "UPDATE jobs SET attempts = 20 WHERE id = :id", id=lease.job_id)
    lease = jobs.Lease(**{**_fields(lease), "attempts": 20})
    assert await _fail(engine, lease, errors.ApifyTimeoutError("slow")) is retry.Action.RETRY
    assert await kit.delay_of(engine, lease.job_id) == 900.0


async def test_retry_delay_is_jittered(engine: sa_async.AsyncEngine) -> None:
    await jobs.enqueue_many(engine, kind="k", count=20)
    leases = await jobs.claim(engine, owner="w", limit=20, lease_seconds=30)
    rng = random.Random(3)
    for lease in leases:
        await _fail(engine, lease, RuntimeError("flaky"), rng=rng)
    delays = [await kit.delay_of(engine, lease.job_id) for lease in leases]
    assert all(0.0 <= d <= 30.0 for d in delays)
    assert len(set(delays)) == len(delays)


async def test_permanent_errors_do_not_retry(engine: sa_async.AsyncEngine) -> None:
    lease = await _claimed(engine, max_attempts=5)
    failed = kit.sample("kairo_jobs_finished_total", kind="k", outcome="failed")
    action = await _fail(
        engine, lease, errors.ApifyAuthError("token rejected"), evidence_status={"failed": [1]}
    )
    assert action is retry.Action.FAIL
    job = await kit.row(engine, lease.job_id)
    assert (job.status, job.attempts, job.last_error_kind) == ("failed", 1, "auth")
    assert job.finished_at is not None
    assert job.evidence_status == {"failed": [1]}
    assert kit.sample("kairo_jobs_finished_total", kind="k", outcome="failed") == failed + 1


async def test_snooze_does_not_spend_an_attempt(engine: sa_async.AsyncEngine) -> None:
    lease = await _claimed(engine, max_attempts=1)
    # Even on its last allowed attempt, "not now" waits instead of failing.
    action = await _fail(engine, lease, errors.ApifyNotNowError("concurrent-runs-limit-exceeded"))
    assert action is retry.Action.SNOOZE
    job = await kit.row(engine, lease.job_id)
    assert (job.status, job.attempts, job.last_error_kind) == ("pending", 0, "not_now")
    assert await kit.delay_of(engine, lease.job_id) == 45.0


async def test_exhausted_attempts_fail_keeping_the_last_error(engine: sa_async.AsyncEngine) -> None:
    lease = await _claimed(engine, max_attempts=2)
    await _fail(engine, lease, errors.ApifyTransientError("first"), base_seconds=0.0)
    lease = outcomes.only(await jobs.claim(engine, owner="w", limit=1, lease_seconds=30))
    assert lease.attempts == 2
    assert await _fail(engine, lease, errors.ApifyRunFailedError("run FAILED")) is retry.Action.FAIL
    job = await kit.row(engine, lease.job_id)
    assert (job.status, job.attempts) == ("failed", 2)
    assert (job.last_error, job.last_error_kind) == ("run FAILED", "apify_failed")


async def test_a_retry_keeps_the_stored_evidence_unless_given_new(
    engine: sa_async.AsyncEngine,
) -> None:
    lease = await _claimed(engine)
    await kit.execute(
        engine,
        """UPDATE jobs SET evidence_status = '{"refreshed": ["a"]}' WHERE id = :id""",
        id=lease.job_id,
    )
    await _fail(engine, lease, RuntimeError("x"), base_seconds=0.0)
    assert (await kit.row(engine, lease.job_id)).evidence_status == {"refreshed": ["a"]}


def _fields(lease: jobs.Lease) -> dict[str, object]:
    return {name: getattr(lease, name) for name in lease.__dataclass_fields__}
