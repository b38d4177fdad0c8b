"""The run budget of an Apify account, shared by every replica: rows in ``run_slots``.

A source that is about to start a run registers a row for its run intent (``granted``
false: waiting) and is granted a slot when the account has room. A row counts while its
job still holds the lease token written on it (the job is ``running`` with that token),
and a granted row goes on counting, whatever its job does, while its run has been sent to
Apify and has not ended: the run occupies the account until then (the run ledger removes
the row when it records the end). Any other row stops counting as soon as its job lets
go of the lease: a replica killed with -9 leaves waiting rows, and slots of runs that
ended or were never sent, that stop counting as soon as the reaper (or another replica)
takes the job, and the next acquisition deletes them. So slots cannot leak, and the
budget never grants past what is really running on the account.

Every change for an account runs under a transaction-level advisory lock on the
account's name, so two replicas never count at the same moment and grant past the
budget. Grants are fair across brands: each free slot goes to the waiter whose brand
holds the fewest slots, then to the oldest waiter. Granting a slot to someone else's
waiter sends ``NOTIFY kairo_run_slots`` with the granted run ids (delivered at commit).
"""

from __future__ import annotations

import collections
import dataclasses
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import tables

CHANNEL = "kairo_run_slots"
LOCK_NAMESPACE = 0x6B616972  # "kair": the advisory-lock namespace of run budgets

# The run of a granted row is on Apify: sent, and not ended (terminal or START_FAILED).
_RUN_ON_APIFY = f"""s.granted AND EXISTS (
    SELECT 1 FROM apify_runs r
    WHERE r.id = s.run_id AND r.sent_at IS NOT NULL AND r.status NOT IN {tables.RUN_ENDED_SQL}
)"""
_LIVE = f"""(EXISTS (
    SELECT 1 FROM jobs j
    WHERE j.id = s.job_id AND j.lease_token = s.lease_token AND j.status = 'running'
) OR ({_RUN_ON_APIFY}))"""


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    run_id: uuid.UUID
    account: str
    brand_id: uuid.UUID
    job_id: uuid.UUID
    lease_token: uuid.UUID
    memory_mbytes: int


async def lock(conn: sa_async.AsyncConnection, account: str) -> None:
    await conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:ns, hashtext(:account))"),
        {"ns": LOCK_NAMESPACE, "account": account},
    )


async def sweep(conn: sa_async.AsyncConnection, account: str) -> int:
    """Delete the account's rows whose job no longer holds their lease (dead holders)."""
    result = await conn.execute(
        sa.text(f"DELETE FROM run_slots s WHERE s.account = :account AND NOT {_LIVE}"),
        {"account": account},
    )
    return int(result.rowcount or 0)


async def register(conn: sa_async.AsyncConnection, claim: Claim, *, granted: bool = False) -> bool:
    """Insert or refresh the claim's row; returns whether it holds a slot now.

    A row left by an earlier holder of the same run (another lease) loses its grant
    unless ``granted`` (a run already in flight on Apify, resumed: it occupies the
    account whatever the budget says).
    """
    row = (
        await conn.execute(
            sa.text(
                """
                INSERT INTO run_slots AS r
                    (run_id, account, brand_id, job_id, lease_token, memory_mbytes, granted,
                     created_at)
                VALUES (:run_id, :account, :brand_id, :job_id, :lease_token, :memory, :granted,
                        clock_timestamp())
                ON CONFLICT (run_id) DO UPDATE SET
                    account = excluded.account,
                    job_id = excluded.job_id,
                    lease_token = excluded.lease_token,
                    memory_mbytes = excluded.memory_mbytes,
                    granted = excluded.granted
                        OR (r.granted AND r.lease_token = excluded.lease_token)
                RETURNING granted
                """
            ),
            {**dataclasses.asdict(claim), "memory": claim.memory_mbytes, "granted": granted},
        )
    ).one()
    return bool(row.granted)


async def grant(
    conn: sa_async.AsyncConnection, account: str, *, max_runs: int, max_memory_mbytes: int
) -> list[uuid.UUID]:
    """Grant free slots to waiters, fairly; returns the run ids granted. Call under :func:`lock`."""
    rows = (
        await conn.execute(
            sa.text(
                "SELECT run_id, brand_id, memory_mbytes, granted FROM run_slots "
                "WHERE account = :account ORDER BY created_at, run_id"
            ),
            {"account": account},
        )
    ).all()
    held: collections.Counter[uuid.UUID] = collections.Counter()
    runs = memory = 0
    waiting: list[Any] = []
    for row in rows:
        if row.granted:
            held[row.brand_id] += 1
            runs += 1
            memory += row.memory_mbytes
        else:
            waiting.append(row)
    chosen: list[uuid.UUID] = []
    while waiting and runs < max_runs:
        # The brand holding the fewest slots first, then the oldest waiter (list order).
        best = min(range(len(waiting)), key=lambda i: held[waiting[i].brand_id])
        row = waiting[best]
        if memory + row.memory_mbytes > max_memory_mbytes:
            break  # no skipping ahead: a big run must not starve behind small ones
        waiting.pop(best)
        held[row.brand_id] += 1
        runs += 1
        memory += row.memory_mbytes
        chosen.append(row.run_id)
    if chosen:
        await conn.execute(
            sa.text("UPDATE run_slots SET granted = true WHERE run_id = ANY(:ids)"),
            {"ids": chosen},
        )
    return chosen


@dataclasses.dataclass(frozen=True, slots=True)
class Look:
    """What a waiter's poll saw of its account without the lock (:func:`look`)."""

    mine: bool  # our row is granted (a notification was lost)
    registered: bool  # our row is there, with our lease token
    dead: int  # rows whose holder let go: a locked pass would sweep them
    room: bool  # a locked pass might grant a waiter now

    @property
    def needs_pass(self) -> bool:
        """Whether a pass under the lock could change anything for this waiter."""
        return self.mine or not self.registered or self.dead > 0 or self.room


async def look(
    conn: sa_async.AsyncConnection,
    claim: Claim,
    *,
    max_runs: int,
    max_memory_mbytes: int,
) -> Look:
    """One read of the account's rows, without the lock: enough for a waiter's poll to know
    whether a locked pass (sweep, grant) could change anything.

    It errs towards a pass: ``room`` holds when the live grants leave a run and the memory
    of the smallest waiter free, though :func:`grant` may then choose a bigger one that
    does not fit. A pass decides; a look only spares the account's lock the polls that
    would find nothing to do (most of them, while an account is full).
    """
    row = (
        await conn.execute(
            sa.text(
                f"""
                SELECT
                    bool_or(s.granted) FILTER (
                        WHERE s.run_id = :run_id AND s.lease_token = :token) AS mine,
                    count(*) FILTER (
                        WHERE s.run_id = :run_id AND s.lease_token = :token) AS registered,
                    count(*) FILTER (WHERE NOT {_LIVE}) AS dead,
                    count(*) FILTER (WHERE s.granted) AS runs,
                    coalesce(sum(s.memory_mbytes) FILTER (WHERE s.granted), 0) AS memory,
                    min(s.memory_mbytes) FILTER (WHERE NOT s.granted) AS smallest_waiter
                FROM run_slots s WHERE s.account = :account
                """
            ),
            {"run_id": claim.run_id, "token": claim.lease_token, "account": claim.account},
        )
    ).one()
    room = (
        row.smallest_waiter is not None
        and int(row.runs) < max_runs
        and int(row.memory) + int(row.smallest_waiter) <= max_memory_mbytes
    )
    return Look(
        mine=bool(row.mine),
        registered=int(row.registered) > 0,
        dead=int(row.dead),
        room=room,
    )


async def notify(conn: sa_async.AsyncConnection, run_ids: list[uuid.UUID]) -> None:
    """Wake the granted waiters, wherever they run (delivered when the transaction commits)."""
    if run_ids:
        await conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": ",".join(str(r) for r in run_ids)},
        )


async def remove(conn: sa_async.AsyncConnection, run_id: uuid.UUID, lease_token: uuid.UUID) -> bool:
    """Delete our row of a run (a slot or a wait); False when it was not ours any more, or
    when its run is still on Apify (the row counts until the run ledger records the end)."""
    result = await conn.execute(
        sa.text(
            "DELETE FROM run_slots s WHERE s.run_id = :run_id AND s.lease_token = :token "
            f"AND NOT ({_RUN_ON_APIFY})"
        ),
        {"run_id": run_id, "token": lease_token},
    )
    return bool(result.rowcount)


async def forget(conn: sa_async.AsyncConnection, run_id: uuid.UUID) -> str | None:
    """Delete the row of a run that has ended, whoever holds it: its account, or None when
    there was none. Call under :func:`lock` of that account, then :func:`grant`."""
    account = await conn.scalar(
        sa.text("DELETE FROM run_slots WHERE run_id = :run_id RETURNING account"),
        {"run_id": run_id},
    )
    return None if account is None else str(account)


async def resize(
    conn: sa_async.AsyncConnection, run_id: uuid.UUID, lease_token: uuid.UUID, memory_mbytes: int
) -> bool:
    """Count our row of a run at ``memory_mbytes``; False when it already did or is not ours.

    The memory Apify gave the run, when it differs from what the row was registered with.
    Call under :func:`lock`: the account's memory sum changes.
    """
    result = await conn.execute(
        sa.text(
            "UPDATE run_slots SET memory_mbytes = :memory "
            "WHERE run_id = :run_id AND lease_token = :token AND memory_mbytes <> :memory"
        ),
        {"run_id": run_id, "token": lease_token, "memory": memory_mbytes},
    )
    return bool(result.rowcount)


async def usage(conn: sa_async.AsyncConnection, account: str | None = None) -> dict[str, Any]:
    """Live slots (held by a job that still has its lease, or of a run still on Apify) and
    waiters, per account."""
    where = "AND s.account = :account" if account is not None else ""
    rows = (
        await conn.execute(
            sa.text(
                f"""
                SELECT s.account,
                       count(*) FILTER (WHERE s.granted AND {_LIVE}) AS runs,
                       coalesce(sum(s.memory_mbytes)
                           FILTER (WHERE s.granted AND {_LIVE}), 0) AS memory_mbytes,
                       count(*) FILTER (WHERE NOT s.granted AND {_LIVE}) AS waiting,
                       count(*) FILTER (WHERE NOT {_LIVE}) AS dead
                FROM run_slots s WHERE true {where} GROUP BY s.account
                """
            ),
            {"account": account},
        )
    ).all()
    return {
        r.account: {
            "runs": int(r.runs),
            "memory_mbytes": int(r.memory_mbytes),
            "waiting": int(r.waiting),
            "dead": int(r.dead),
        }
        for r in rows
    }
