"""The pipeline's side of a database outage: a short one inside a compile job costs
no attempt and pays Apify once.

The engine's transactions fail now and then with ``errors.DatabaseUnavailableError``
(what the ``db`` boundary raises for a dropped connection or a restart); the pipeline
retries each unit of work whole, so the job succeeds on its first attempt with every
item stored once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pipeline_kit import Kit

from kairo_ingest import errors
from kairo_ingest.db import tables
from kairo_ingest.domain import evidence
from kairo_ingest.pipeline import compile_job, tx
from support import outcomes


class _Refused:
    async def __aenter__(self) -> Any:
        raise errors.DatabaseUnavailableError("connection was closed in the middle of operation")

    async def __aexit__(self, *exc: object) -> None:
        return None


class _CommitsThenFails:
    """The transaction commits, then the answer to COMMIT is lost with the connection."""

    def __init__(self, transaction: Any) -> None:
        self.transaction = transaction

    async def __aenter__(self) -> Any:
        return await self.transaction.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self.transaction.__aexit__(*exc)
        if exc[0] is None:
            raise errors.DatabaseUnavailableError("connection lost after COMMIT")


class FlakyEngine:
    """The real engine, but chosen ``begin()`` / ``connect()`` calls fail as in an outage."""

    def __init__(
        self,
        real: Any,
        *,
        fail_begin: set[int],
        fail_connect: set[int],
        lose_commit: frozenset[int] = frozenset(),
    ) -> None:
        self.real = real
        self.fail_begin, self.fail_connect, self.lose_commit = fail_begin, fail_connect, lose_commit
        self.begins = self.connects = self.refused = 0

    def begin(self) -> Any:
        self.begins += 1
        if self.begins in self.fail_begin:
            self.refused += 1
            return _Refused()
        if self.begins in self.lose_commit:
            self.refused += 1
            return _CommitsThenFails(self.real.begin())
        return self.real.begin()

    def connect(self) -> Any:
        self.connects += 1
        if self.connects in self.fail_connect:
            self.refused += 1
            return _Refused()
        return self.real.connect()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_a_short_outage_inside_a_job_costs_no_attempt_and_no_second_run(kit: Kit) -> None:
    brand, _ = await kit.brand([("tiktok", "profile_videos", "@acme")])
    lease = await kit.lease(brand)
    # Fail the first read (the source list), the intent, the run's recording, pages...
    engine = FlakyEngine(kit.engine, fail_begin={1, 2, 3, 5, 6, 8, 9}, fail_connect={1, 2})
    policy = tx.Policy(budget_seconds=20.0, base_seconds=0.005, cap_seconds=0.05)

    result = await compile_job.run(
        kit.deps(
            engine=engine,
            db_retry=policy,
            page_size=10,
            caps={"tiktok.profile_videos": 40},
        ),
        lease,
    )

    assert engine.refused == 9, "the outage was injected"
    assert result.verdict is evidence.Verdict.SUCCEEDED, result.evidence_status
    entry = outcomes.only(result.evidence_status["refreshed"])
    assert entry["raw_items"] == 40
    assert kit.sim.stats()["starts"] == 1, "one paid Apify run"
    run = outcomes.only(await kit.rows(tables.apify_runs))
    assert (run.status, run.attempt) == ("SUCCEEDED", 1)
    assert await kit.count(tables.raw_apify_items) == 40
    async with kit.engine.connect() as conn:
        distinct = await conn.scalar(
            sa.select(sa.func.count(sa.distinct(tables.raw_apify_items.c.item_index)))
        )
    assert distinct == 40


async def test_an_intent_whose_commit_answer_was_lost_is_not_created_twice(kit: Kit) -> None:
    """The retried transaction finds the intent it committed and takes it over: no second
    STARTING row that never reaches Apify, one paid run."""
    brand, _ = await kit.brand([("tiktok", "profile_videos", "@acme")])
    lease = await kit.lease(brand)
    # The first transaction of the job is the intent's.
    engine = FlakyEngine(kit.engine, fail_begin=set(), fail_connect=set(), lose_commit={1})
    policy = tx.Policy(budget_seconds=20.0, base_seconds=0.005, cap_seconds=0.05)

    result = await compile_job.run(kit.deps(engine=engine, db_retry=policy), lease)

    assert engine.refused == 1
    assert result.verdict is evidence.Verdict.SUCCEEDED
    run = outcomes.only(await kit.rows(tables.apify_runs))
    assert (run.status, run.attempt) == ("SUCCEEDED", 1)
    assert kit.sim.stats()["starts"] == 1
