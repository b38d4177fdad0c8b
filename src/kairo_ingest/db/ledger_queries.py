"""The run ledger's SQL: the runs no job follows, claimed by the ledger service, and what
the console and the CLI show of the ledger.

A run *has ended* when its row is terminal (SUCCEEDED, FAILED, TIMED-OUT, ABORTED) or
START_FAILED. A run that has not ended is *followed by its job* while that job is
``running`` (it holds a lease) and has not released the run (``released_at``), except a
run on Apify whose job an operator cancelled (``cancel_requested_at``: its holder stops
at its next heartbeat, and the run is aborted now); every other one is the ledger's. The
ledger service claims due rows with ``FOR UPDATE SKIP LOCKED`` and pushes
``ledger_check_at`` forward in the same statement, so replicas split the work and never
look at one run twice at once (:func:`claim`).

Every ledger write re-checks, in its own statement, that the run has not ended, and the
writes that decide something about a run that is not on Apify yet (:func:`bind`,
:func:`start_failed`) also that no job took it up meanwhile: a job that claims the run's
job again wins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import runs, tables

CHANNEL = "kairo_ledger"  # NOTIFY wakes the ledger service (``jobs cancel`` sends it)
ENDED = tables.RUN_ENDED_SQL
FINISHED_JOB = "('succeeded', 'failed', 'cancelled')"

# No job follows the run: released by its job, or its job is not running (or is gone),
# or the run is on Apify and its job's cancel, or an operator's abort of the run itself
# (the console), was asked for. (An intent not on Apify yet stays its job's until the
# holder stops: it may be binding the run this very moment.)
_UNFOLLOWED = """(r.released_at IS NOT NULL
    OR (r.operator_abort_requested_at IS NOT NULL AND r.apify_run_id IS NOT NULL)
    OR NOT EXISTS (
        SELECT 1 FROM jobs j WHERE j.id = r.job_id AND j.status = 'running'
          AND (j.cancel_requested_at IS NULL OR r.apify_run_id IS NULL)
    ))"""
# The same over the joined j (_JOINED).
_UNFOLLOWED_JOINED = """(r.released_at IS NOT NULL OR j.id IS NULL OR j.status <> 'running'
    OR (j.cancel_requested_at IS NOT NULL AND r.apify_run_id IS NOT NULL)
    OR (r.operator_abort_requested_at IS NOT NULL AND r.apify_run_id IS NOT NULL))"""

# Why no job will take the run up again (NULL while its job may), over r, j and s: its job
# has finished (succeeded, failed for good, cancelled), is gone, or an operator asked for
# its cancel (the holder ends it cancelled at its next heartbeat); or its source was
# disabled (a later attempt does not resume it), moved to another account (the run is
# not to bill its old account further) or deleted. A job that is only `pending` (a
# retry's backoff, a release at shutdown) still wants its run.
_UNWANTED = f"""CASE
    WHEN r.operator_abort_requested_at IS NOT NULL THEN 'an operator asked for its abort'
    WHEN j.id IS NULL THEN 'its job is gone'
    WHEN j.status IN {FINISHED_JOB} THEN 'its job is ' || j.status
    WHEN j.cancel_requested_at IS NOT NULL THEN 'its job was cancelled'
    WHEN s.id IS NULL THEN 'its source is gone'
    WHEN NOT s.enabled THEN 'its source is disabled'
    WHEN coalesce(s.account, 'default') <> r.account
        THEN 'its source moved to account ' || coalesce(s.account, 'default')
END"""
_JOINED = """apify_runs r
    LEFT JOIN jobs j ON j.id = r.job_id
    LEFT JOIN source_connections s ON s.id = r.source_connection_id"""

# Due: its next look has come; or it became unwanted (its job finished, its source changed)
# after the ledger last claimed it, no abort was sent yet, and there is one to send or
# nothing to wait for: a cancel is acted on at once, whatever the run's backoff (an intent
# being reconciled keeps its own pace).
_CLAIM = sa.text(
    f"""
    WITH due AS (
        SELECT r.id, {_UNWANTED} AS unwanted
        FROM {_JOINED}
        WHERE r.status NOT IN {ENDED}
          AND {_UNFOLLOWED_JOINED}
          AND (r.ledger_check_at IS NULL OR r.ledger_check_at <= now()
               OR (r.abort_requested_at IS NULL AND ({_UNWANTED}) IS NOT NULL
                   AND (r.apify_run_id IS NOT NULL OR r.sent_at IS NULL)
                   AND r.ledger_looked_at
                       < greatest(j.finished_at, j.cancel_requested_at, s.updated_at,
                                  r.operator_abort_requested_at)))
        ORDER BY r.ledger_check_at NULLS FIRST, r.id
        LIMIT CAST(:limit AS integer)
        FOR UPDATE OF r SKIP LOCKED
    )
    UPDATE apify_runs AS r
    SET ledger_check_at = now() + make_interval(secs => CAST(:hold_seconds AS double precision)),
        ledger_looked_at = now()
    FROM due
    WHERE r.id = due.id
    RETURNING r.*, due.unwanted,
        extract(epoch FROM now() - coalesce(r.started_at, r.sent_at, r.intent_at))
            AS age_seconds,
        extract(epoch FROM now() - r.sent_at) AS since_sent_seconds
    """
)

_RUN_FIELDS = [f.name for f in dataclasses.fields(runs.Run)]


@dataclasses.dataclass(frozen=True, slots=True)
class Owned:
    """A run the ledger claimed, with why its job no longer wants it (None: it may)."""

    run: runs.Run
    unwanted: str | None
    age_seconds: float
    """Since the run started (else since its start was sent, else since its intent)."""
    since_sent_seconds: float | None


async def claim(conn: sa_async.AsyncConnection, *, limit: int, hold_seconds: float) -> list[Owned]:
    """Claim up to ``limit`` due runs that no job follows; each is held ``hold_seconds``."""
    rows = await conn.execute(_CLAIM, {"limit": limit, "hold_seconds": hold_seconds})
    owned = []
    for row in rows:
        m = row._mapping
        owned.append(
            Owned(
                run=runs.Run(**{name: m[name] for name in _RUN_FIELDS}),
                unwanted=m["unwanted"],
                age_seconds=float(m["age_seconds"] or 0.0),
                since_sent_seconds=(
                    None if m["since_sent_seconds"] is None else float(m["since_sent_seconds"])
                ),
            )
        )
    return owned


_NOTE = sa.text(
    f"""
    UPDATE apify_runs AS r
    SET status = coalesce(CAST(:status AS text), r.status),
        ledger_check_at = now() + make_interval(secs => CAST(:after AS double precision)),
        updated_at = now()
    WHERE r.id = CAST(:id AS uuid) AND r.status NOT IN {ENDED}
    """
)


async def note(
    conn: sa_async.AsyncConnection,
    run_id: uuid.UUID,
    *,
    status: str | None,
    next_check_seconds: float,
) -> None:
    """The run goes on: keep the status Apify reported (if any) and look again later."""
    await conn.execute(_NOTE, {"id": run_id, "status": status, "after": next_check_seconds})


_ABORT_SENT = sa.text(
    f"""
    UPDATE apify_runs AS r
    SET status = coalesce(CAST(:status AS text), r.status),
        abort_requested_at = now(),
        partial_reason = coalesce(r.partial_reason, CAST(:reason AS text)),
        ledger_check_at = now() + make_interval(secs => CAST(:after AS double precision)),
        updated_at = now()
    WHERE r.id = CAST(:id AS uuid) AND r.status NOT IN {ENDED}
    """
)


async def abort_sent(
    conn: sa_async.AsyncConnection,
    run_id: uuid.UUID,
    *,
    status: str | None,
    reason: str,
    next_check_seconds: float,
) -> None:
    """We asked Apify to abort the run: ``reason`` is what its kept dataset will be marked
    (``partial_reason``) unless an earlier abort (at a deadline) already said why."""
    await conn.execute(
        _ABORT_SENT,
        {"id": run_id, "status": status, "reason": reason, "after": next_check_seconds},
    )


_BIND = sa.text(
    f"""
    UPDATE apify_runs AS r
    SET apify_run_id = CAST(:apify_run_id AS text),
        dataset_id = coalesce(CAST(:dataset_id AS text), r.dataset_id),
        status = CAST(:status AS text),
        started_at = coalesce(CAST(:started_at AS timestamptz), now()),
        updated_at = now()
    WHERE r.id = CAST(:id AS uuid) AND r.status = 'STARTING' AND r.apify_run_id IS NULL
      AND {_UNFOLLOWED}
    RETURNING r.id
    """
)


async def bind(
    conn: sa_async.AsyncConnection,
    run_id: uuid.UUID,
    *,
    apify_run_id: str,
    dataset_id: str | None,
    status: str,
    started_at: dt.datetime | None,
) -> bool:
    """Bind a STARTING intent to the run reconciliation found; False when a job took the
    intent up meanwhile (it reconciles for itself)."""
    row = (
        await conn.execute(
            _BIND,
            {
                "id": run_id,
                "apify_run_id": apify_run_id,
                "dataset_id": dataset_id,
                "status": status,
                "started_at": started_at,
            },
        )
    ).first()
    return row is not None


_START_FAILED = sa.text(
    f"""
    UPDATE apify_runs AS r
    SET status = 'START_FAILED',
        finished_at = now(),
        ended_by = 'ledger',
        error_kind = CAST(:error_kind AS text),
        error_summary = CAST(:error_summary AS text),
        ledger_check_at = NULL,
        updated_at = now()
    WHERE r.id = CAST(:id AS uuid) AND r.status = 'STARTING' AND r.apify_run_id IS NULL
      AND {_UNFOLLOWED}
    RETURNING r.id
    """
)


async def start_failed(
    conn: sa_async.AsyncConnection, run_id: uuid.UUID, *, error_kind: str, error_summary: str
) -> bool:
    """An intent that provably never became a run ends START_FAILED; False when a job took
    it up meanwhile."""
    row = (
        await conn.execute(
            _START_FAILED,
            {"id": run_id, "error_kind": error_kind, "error_summary": error_summary},
        )
    ).first()
    return row is not None


_OPERATOR_ABORT = sa.text(
    f"""
    UPDATE apify_runs AS r
    SET operator_abort_requested_at = now(), updated_at = now()
    WHERE r.id = ANY(CAST(:ids AS uuid[])) AND r.status NOT IN {ENDED}
      AND r.operator_abort_requested_at IS NULL
    RETURNING r.id, pg_notify('{CHANNEL}', CAST(r.id AS text)) IS NULL AS ledger_woken
    """
)


async def request_abort(conn: sa_async.AsyncConnection, run_ids: list[uuid.UUID]) -> int:
    """An operator asks for these runs' abort: each that has not ended and was not asked
    already is marked, and the ledger woken (NOTIFY, sent at the caller's commit). From
    then on no job follows or wants the run, and the ledger aborts it with the token of
    the account that started it. Returns how many runs were marked."""
    if not run_ids:
        return 0
    rows = (await conn.execute(_OPERATOR_ABORT, {"ids": run_ids})).all()
    return len(rows)


# ------------------------------------------------------------------ what the ledger shows

_FOLLOWER = f"""CASE WHEN r.status IN {ENDED} THEN NULL
    WHEN {_UNFOLLOWED} THEN 'ledger' ELSE 'job' END"""


async def live_by_state(conn: sa_async.AsyncConnection) -> list[dict[str, Any]]:
    """Runs that have not ended, by account, status and who follows them (job, ledger)."""
    rows = await conn.execute(
        sa.text(
            f"""
            SELECT r.account, r.status, {_FOLLOWER} AS followed_by, count(*) AS runs
            FROM apify_runs r
            WHERE r.status NOT IN {ENDED}
            GROUP BY 1, 2, 3
            ORDER BY 1, 2, 3
            """
        )
    )
    return [
        {
            "account": r.account,
            "status": r.status,
            "followed_by": r.followed_by,
            "runs": int(r.runs),
        }
        for r in rows
    ]


async def ended_by_state(
    conn: sa_async.AsyncConnection, *, since: dt.datetime
) -> list[dict[str, Any]]:
    """Runs that ended since a time: by account, status, how they ended and who recorded
    the end, with what they cost."""
    rows = await conn.execute(
        sa.text(
            f"""
            SELECT r.account, r.status, coalesce(r.partial_reason, '') AS partial_reason,
                   coalesce(r.ended_by, '') AS ended_by, count(*) AS runs,
                   count(*) FILTER (WHERE r.usage_total_usd IS NULL
                                    AND r.apify_run_id IS NOT NULL) AS without_cost,
                   coalesce(sum(r.usage_total_usd), 0) AS usd
            FROM apify_runs r
            WHERE r.status IN {ENDED} AND r.finished_at >= :since
            GROUP BY 1, 2, 3, 4
            ORDER BY 1, 2, 3, 4
            """
        ),
        {"since": since},
    )
    return [
        {
            "account": r.account,
            "status": r.status,
            "partial_reason": r.partial_reason or None,
            "ended_by": r.ended_by or None,
            "runs": int(r.runs),
            "without_cost": int(r.without_cost),
            "usage_total_usd": round(float(r.usd), 6),
        }
        for r in rows
    ]


async def unfollowed(conn: sa_async.AsyncConnection, *, limit: int = 100) -> list[dict[str, Any]]:
    """The runs that have not ended and that no job follows: the ledger's, oldest first.

    The runs are chosen first (``ix_apify_runs_unended``) and only those ``limit`` joined
    to their job and source: PostgreSQL multiplies the selectivities of ``status <> ALL``
    and so expects a few percent of all runs not to have ended, enough to join them by
    hashing every job, a sequential scan of ``jobs``."""
    rows = await conn.execute(
        sa.text(
            f"""
            WITH r AS MATERIALIZED (
                SELECT r.* FROM apify_runs r
                WHERE r.status NOT IN {ENDED} AND {_UNFOLLOWED}
                ORDER BY r.intent_at, r.id
                LIMIT :limit
            )
            SELECT r.id, r.apify_run_id, r.account, r.status, r.job_id,
                   j.status AS job_status, r.brand_id, r.actor_id, r.sent_at, r.started_at,
                   r.released_at, r.abort_requested_at, r.ledger_check_at,
                   {_UNWANTED} AS unwanted
            FROM r
                LEFT JOIN jobs j ON j.id = r.job_id
                LEFT JOIN source_connections s ON s.id = r.source_connection_id
            ORDER BY r.intent_at, r.id
            """
        ),
        {"limit": limit},
    )
    return [
        {
            "run_id": str(r.id),
            "apify_run_id": r.apify_run_id,
            "account": r.account,
            "status": r.status,
            "job_id": None if r.job_id is None else str(r.job_id),
            "job_status": r.job_status,
            "unwanted": r.unwanted,
            "brand_id": str(r.brand_id),
            "actor_id": r.actor_id,
            "sent_at": _iso(r.sent_at),
            "started_at": _iso(r.started_at),
            "released_at": _iso(r.released_at),
            "abort_requested_at": _iso(r.abort_requested_at),
            "next_check_at": _iso(r.ledger_check_at),
        }
        for r in rows
    ]


async def unfollowed_per_account(conn: sa_async.AsyncConnection) -> dict[str, int]:
    """How many runs that have not ended no job follows, per account (the metrics' gauge)."""
    rows = await conn.execute(
        sa.text(
            f"""
            SELECT r.account, count(*) AS runs FROM apify_runs r
            WHERE r.status NOT IN {ENDED} AND {_UNFOLLOWED}
            GROUP BY r.account
            """
        )
    )
    return {r.account: int(r.runs) for r in rows}


async def unwanted_left(conn: sa_async.AsyncConnection) -> int:
    """Runs that have not ended, that no job follows and that no job wants any more: what
    the ledger still has to abort or record (``run --drain`` waits for 0)."""
    value = await conn.scalar(
        sa.text(
            f"""
            SELECT count(*) FROM {_JOINED}
            WHERE r.status NOT IN {ENDED}
              AND {_UNFOLLOWED_JOINED}
              AND ({_UNWANTED}) IS NOT NULL
            """
        )
    )
    return int(value or 0)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()
