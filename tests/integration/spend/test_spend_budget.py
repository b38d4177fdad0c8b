"""One run budget per account across replicas, kept in PostgreSQL.

Slots are rows tied to run intents; they count only while their job holds the same
lease; grants are serialized per account, fair across brands, and a freed slot wakes
its next holder by NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import types
import typing
import uuid

import asyncpg
import spend_kit
import sqlalchemy as sa
from spend_kit import TOKEN_A, SpendKit
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import platform
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import run_slots, tables
from kairo_ingest.pipeline import budget, compile_job, tenants
from kairo_ingest.worker import listener as worker_listener
from support import outcomes

SIX = [
    ("instagram", "posts", "@one"),
    ("instagram", "reels", "@one"),
    ("tiktok", "profile_videos", "@one"),
    ("youtube", "channel_videos", "https://www.youtube.com/@one"),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/one/"),
    ("instagram", "posts", "@two"),
]


async def test_no_more_runs_in_flight_than_the_accounts_budget(kit: SpendKit) -> None:
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=2)
    brand, _ = await kit.brand("tenant-a", SIX)
    spent = budget.Budget(kit.engine, poll_seconds=0.05)
    result = await compile_job.run(kit.deps(budget=spent), await kit.lease(brand))
    assert len(result.evidence_status["refreshed"]) == 6, result.evidence_status
    stats = kit.sim.stats()
    assert stats["activePeakByToken"][platform.token_tag(TOKEN_A)] == 2
    assert stats["rejected"] == {}
    assert await kit.count_slots() == 0  # every slot released


async def test_grants_go_to_the_brand_holding_fewest_slots_then_the_oldest(
    engine: sa_async.AsyncEngine,
) -> None:
    big, small = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        big_job = await spend_kit.job_row(conn, big)
        small_job = await spend_kit.job_row(conn, small, running=False)
        # Another running job (one per brand).
        small_job = await spend_kit.job_row(conn, uuid.uuid4())
        await spend_kit.slot_row(conn, big, big_job, granted=True)
        big_waits = [await spend_kit.slot_row(conn, big, big_job) for _ in range(3)]  # oldest first
        small_wait = await spend_kit.slot_row(conn, uuid.uuid4(), small_job)
        granted = await run_slots.grant(conn, "acct", max_runs=3, max_memory_mbytes=10**6)
    # Two free slots: the brand with none goes first although it asked last, then the
    # oldest of the big brand's waiters.
    assert granted == [small_wait, big_waits[0]]


async def test_a_slot_whose_job_lost_its_lease_is_free_and_swept(
    engine: sa_async.AsyncEngine,
) -> None:
    brand = uuid.uuid4()
    async with engine.begin() as conn:
        dead_job = await spend_kit.job_row(conn, brand)
        await spend_kit.slot_row(conn, brand, dead_job, granted=True)
        # The holder was killed; the reaper took its job back (a new lease, or none).
        await conn.execute(
            sa.update(tables.jobs)
            .where(tables.jobs.c.id == dead_job[0])
            .values(status="pending", lease_token=None, lease_expires_at=None)
        )
        live = await spend_kit.job_row(conn, uuid.uuid4())
        waiting = await spend_kit.slot_row(conn, uuid.uuid4(), live)
        assert (await run_slots.usage(conn, "acct"))["acct"] == {
            "runs": 0,
            "memory_mbytes": 0,
            "waiting": 1,
            "dead": 1,
        }
        assert await run_slots.sweep(conn, "acct") == 1
        assert await run_slots.grant(conn, "acct", max_runs=1, max_memory_mbytes=10**6) == [waiting]


async def test_a_waiter_is_woken_by_notify_not_by_its_poll(kit: SpendKit, db_url: str) -> None:
    """The poll is an hour long: only the NOTIFY of the released slot can wake the waiter."""
    await kit.account("tenant-a", TOKEN_A, max_concurrent_runs=1)
    brand, _ = await kit.brand("tenant-a")
    spent = budget.Budget(kit.engine, poll_seconds=3600)
    listener = worker_listener.Listener(
        db_engine.plain_dsn(db_url), spent.on_notify, channel=run_slots.CHANNEL
    )
    stop = asyncio.Event()
    listening = asyncio.create_task(listener.run(stop))
    try:
        await outcomes.within(30, listener.listening.wait())
        async with asyncio.timeout(120):
            result = await compile_job.run(kit.deps(budget=spent), await kit.lease(brand))
    finally:
        stop.set()
        await outcomes.within(10, listening)
    assert len(result.evidence_status["refreshed"]) == 2, result.evidence_status
    assert spent.wakeups >= 1
    assert kit.sim.stats()["activePeakByToken"][platform.token_tag(TOKEN_A)] == 1


def _ask(run: uuid.UUID, brand: uuid.UUID, job: tuple[uuid.UUID, uuid.UUID]) -> budget.Ask:
    """An ask for ``run`` in account ``acct`` (one run at a time), holding ``job``'s lease."""
    return typing.cast(
        budget.Ask,
        types.SimpleNamespace(
            run=types.SimpleNamespace(id=run, brand_id=brand),
            tenant=types.SimpleNamespace(
                account="acct",
                limits=tenants.Limits(max_concurrent_runs=1, max_memory_mbytes=10**6),
            ),
            lease=types.SimpleNamespace(job_id=job[0], token=job[1], owner="test"),
            force=False,
        ),
    )


@dataclasses.dataclass
class _Waiting:
    """A waiter for the one slot of account ``acct``, which another job's run holds."""

    budget: budget.Budget
    granted: asyncio.Event
    held: uuid.UUID  # the run holding the slot
    holder: tuple[uuid.UUID, uuid.UUID]  # its job (id, lease token)


@contextlib.asynccontextmanager
async def _a_waiter(engine: sa_async.AsyncEngine) -> typing.AsyncIterator[_Waiting]:
    holder_brand, brand = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        holder = await spend_kit.job_row(conn, holder_brand)
        held = await spend_kit.slot_row(conn, holder_brand, holder, granted=True)
        job = await spend_kit.job_row(conn, brand)
        run = await spend_kit.slot_row(conn, brand, job)
    waiting = _Waiting(budget.Budget(engine, poll_seconds=0.05), asyncio.Event(), held, holder)

    async def wait_for_the_slot() -> None:
        async with waiting.budget.slot(_ask(run, brand, job)):
            waiting.granted.set()

    task = asyncio.create_task(wait_for_the_slot())
    try:
        await outcomes.until(
            lambda: waiting.budget.polls_spared >= 1, "a poll that took no lock (none did)", 30
        )
        assert not waiting.granted.is_set()
        yield waiting
    finally:
        if waiting.granted.is_set():  # it gives the slot back (shielded) and returns
            await outcomes.within(30, task, "the slot's release")
        else:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_waiters_poll_takes_the_accounts_lock_only_when_a_pass_could_change_something(
    engine: sa_async.AsyncEngine, db_url: str
) -> None:
    """While the account is full, a poll reads its rows without the lock: polls go on while
    another session holds it. Once the held slot is freed without a notification, the next
    poll sees room, takes the lock and grants the waiter its slot."""
    locker = await asyncpg.connect(db_engine.plain_dsn(db_url))
    try:
        async with _a_waiter(engine) as waiting:
            await locker.execute(
                "SELECT pg_advisory_lock($1, hashtext('acct'))", run_slots.LOCK_NAMESPACE
            )
            spared = waiting.budget.polls_spared
            await outcomes.until(
                lambda: waiting.budget.polls_spared >= spared + 5,
                "5 more polls while the lock is held (a poll waited for the lock)",
                30,
            )
            assert not waiting.granted.is_set()
            await locker.execute(
                "SELECT pg_advisory_unlock($1, hashtext('acct'))", run_slots.LOCK_NAMESPACE
            )
            async with engine.begin() as conn:  # freed, and nobody told the waiter
                await conn.execute(
                    sa.delete(tables.run_slots).where(tables.run_slots.c.run_id == waiting.held)
                )
            await outcomes.until(
                waiting.granted.is_set, "a poll saw the freed slot and took it", 30
            )
    finally:
        await locker.close()


async def test_a_waiters_poll_sweeps_the_slot_of_a_holder_that_let_go(
    engine: sa_async.AsyncEngine,
) -> None:
    """A holder killed with -9 tells nobody: its job is taken back by the reaper, and the
    waiter's next poll sees a dead row, takes the lock, sweeps it and takes the slot."""
    async with _a_waiter(engine) as waiting:
        async with engine.begin() as conn:  # the reaper takes the killed holder's job back
            await conn.execute(
                sa.update(tables.jobs)
                .where(tables.jobs.c.id == waiting.holder[0])
                .values(status="pending", lease_token=None, lease_expires_at=None)
            )
        await outcomes.until(
            waiting.granted.is_set, "a poll swept the dead holder's slot and took it", 30
        )
