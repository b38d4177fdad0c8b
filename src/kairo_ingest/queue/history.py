"""A job's attempt history: every attempt with its owner, times, outcome, error, the Apify
runs it started and their cost.

Ended attempts are rows of ``job_attempts`` (written by the statement that ended each,
:mod:`kairo_ingest.queue.endings`); the running attempt is the job row itself. A run
belongs to the attempt that created its intent (``apify_runs.job_attempt``); an attempt's
cost is the sum of its runs' ``usage_total_usd`` as recorded now (a run still going, or
followed to its end after the attempt, adds its cost when it is recorded). The rows go
with their job: ``job_attempts`` cascades on the job's deletion (retention).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid
from typing import Any

import sqlalchemy as sa

from kairo_ingest.db import dberrors
from kairo_ingest.domain import statuses
from kairo_ingest.queue import binds, jobs, sql


@dataclasses.dataclass(frozen=True, slots=True)
class RunRef:
    """One Apify run an attempt started."""

    id: uuid.UUID
    apify_run_id: str | None
    source_connection_id: uuid.UUID
    actor_id: str
    account: str | None
    status: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    usage_total_usd: decimal.Decimal | None
    error_kind: str | None
    error_summary: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a job. ``outcome`` is a :class:`statuses.AttemptOutcome` value
    (``running`` for the current attempt, whose ``ended_at`` and ``job_status`` are None)."""

    number: int
    owner: str
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    outcome: str
    job_status: str | None
    error_kind: str | None
    error: str | None
    runs: tuple[RunRef, ...] = ()

    @property
    def cost_usd(self) -> decimal.Decimal | None:
        """What its runs cost so far, by Apify's final run objects (None: nothing known)."""
        costs = [run.usage_total_usd for run in self.runs if run.usage_total_usd is not None]
        return sum(costs, decimal.Decimal(0)) if costs else None

    def to_json(self) -> dict[str, Any]:
        cost = self.cost_usd
        return {
            "number": self.number,
            "owner": self.owner,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "outcome": self.outcome,
            "job_status": self.job_status,
            "error_kind": self.error_kind,
            "error": self.error,
            "cost_usd": None if cost is None else float(cost),
            "runs": [
                {
                    "id": str(run.id),
                    "apify_run_id": run.apify_run_id,
                    "source_connection_id": str(run.source_connection_id),
                    "actor_id": run.actor_id,
                    "account": run.account,
                    "status": run.status,
                    "started_at": _iso(run.started_at),
                    "finished_at": _iso(run.finished_at),
                    "usage_total_usd": (
                        None if run.usage_total_usd is None else float(run.usage_total_usd)
                    ),
                    "error_kind": run.error_kind,
                    "error_summary": run.error_summary,
                }
                for run in self.runs
            ],
        }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def attempts(bind: binds.Bind, job: jobs.JobRow) -> list[Attempt]:
    """Every attempt of ``job``, oldest first, each with its runs. Runs recorded without an
    attempt (before the history existed) are listed under the attempt number 0."""
    with dberrors.mapped("attempts"):
        async with binds.statement(bind) as conn:
            ended = (await conn.execute(sql.ATTEMPTS, {"id": job.id})).all()
            runs = (await conn.execute(sql.RUNS_OF_JOB, {"id": job.id})).all()
    by_attempt: dict[int, list[RunRef]] = {}
    for row in runs:
        by_attempt.setdefault(row.job_attempt or 0, []).append(_run(row))
    found = [_attempt(row, tuple(by_attempt.pop(row.number, ()))) for row in ended]
    if job.status == statuses.JobStatus.RUNNING and job.claims:
        found.append(
            Attempt(
                number=job.claims,
                owner=job.lease_owner or "unknown worker",
                started_at=job.attempt_started_at,
                ended_at=None,
                outcome=statuses.AttemptOutcome.RUNNING.value,
                job_status=None,
                error_kind=None,
                error=None,
                runs=tuple(by_attempt.pop(job.claims, ())),
            )
        )
    for number in sorted(by_attempt):  # runs of attempts with no row (older releases)
        found.append(
            Attempt(
                number,
                "unknown",
                None,
                None,
                "unrecorded",
                None,
                None,
                None,
                tuple(by_attempt[number]),
            )
        )
    found.sort(key=lambda attempt: attempt.number)
    return found


def _attempt(row: sa.Row[Any], runs: tuple[RunRef, ...]) -> Attempt:
    return Attempt(
        number=row.number,
        owner=row.owner,
        started_at=row.started_at,
        ended_at=row.ended_at,
        outcome=row.outcome,
        job_status=row.job_status,
        error_kind=row.error_kind,
        error=row.error,
        runs=runs,
    )


def _run(row: sa.Row[Any]) -> RunRef:
    return RunRef(
        id=row.id,
        apify_run_id=row.apify_run_id,
        source_connection_id=row.source_connection_id,
        actor_id=row.actor_id,
        account=row.account,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        usage_total_usd=row.usage_total_usd,
        error_kind=row.error_kind,
        error_summary=row.error_summary,
    )
