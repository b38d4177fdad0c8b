"""The ``apify_runs`` table: run intents, their progress and their counts.

Functions that change a run take a connection, so the pipeline can put them in the
same transaction as its lease check (fencing).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import tables
from kairo_ingest.domain import statuses

_t = tables.apify_runs


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    id: uuid.UUID
    job_id: uuid.UUID | None
    source_connection_id: uuid.UUID
    brand_id: uuid.UUID
    actor_id: str
    input: dict[str, Any]
    attempt: int
    apify_run_id: str | None
    dataset_id: str | None
    status: str
    intent_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    item_cap: int | None
    raw_item_count: int | None
    raw_stored_at: dt.datetime | None
    normalized_item_count: int | None
    normalized_created: int | None
    normalized_updated: int | None
    items_skipped: int | None
    normalized_at: dt.datetime | None
    error_kind: str | None
    error_summary: str | None
    account: str = "default"
    """The Apify account that started the run: every request about it uses its token."""
    usage_total_usd: Any = None
    """Decimal USD from Apify's final run object (``usageTotalUsd``), None until known."""
    usage: dict[str, Any] | None = None
    sent_at: dt.datetime | None = None
    """When the last start request was sent (None: never sent)."""
    max_total_charge_usd: Any = None
    charged_event_counts: dict[str, int] | None = None
    partial_reason: str | None = None
    """Why the kept dataset is partial: ``charge_cap``, ``aborted`` or ``timed_out``."""
    ended_by: str | None = None
    ledger_check_at: dt.datetime | None = None
    ledger_looked_at: dt.datetime | None = None
    released_at: dt.datetime | None = None
    abort_requested_at: dt.datetime | None = None

    @property
    def ended(self) -> bool:
        """Nothing more happens to the run: Apify ended it, or it provably never started."""
        return statuses.has_ended(self.status)


_FIELDS = [f.name for f in dataclasses.fields(Run)]


def _run(row: sa.Row[Any]) -> Run:
    m = row._mapping
    return Run(**{name: m[name] for name in _FIELDS})


async def latest_for(
    conn: sa_async.AsyncConnection, *, job_id: uuid.UUID, source_id: uuid.UUID
) -> Run | None:
    row = (
        await conn.execute(
            sa.select(_t)
            .where(_t.c.job_id == job_id, _t.c.source_connection_id == source_id)
            .order_by(_t.c.created_at.desc(), _t.c.attempt.desc())
            .limit(1)
        )
    ).first()
    return _run(row) if row else None


async def newest_reusable(conn: sa_async.AsyncConnection, *, source_id: uuid.UUID) -> Run | None:
    """The newest SUCCEEDED run of a source whose raw items are stored. Failed runs never count."""
    row = (
        await conn.execute(
            sa.select(_t)
            .where(
                _t.c.source_connection_id == source_id,
                _t.c.status == statuses.RunStatus.SUCCEEDED,
                _t.c.raw_stored_at.is_not(None),
                # A run without its end time would sort first (NULLs lead a DESC order)
                # and look newest forever: every end records one, this guards old rows.
                _t.c.finished_at.is_not(None),
            )
            .order_by(_t.c.finished_at.desc())
            .limit(1)
        )
    ).first()
    return _run(row) if row else None


async def create_intent(
    conn: sa_async.AsyncConnection,
    *,
    job_id: uuid.UUID,
    source_id: uuid.UUID,
    brand_id: uuid.UUID,
    actor_id: str,
    run_input: dict[str, Any],
    item_cap: int,
    attempt: int,
    account: str = "default",
    job_attempt: int | None = None,
) -> Run:
    """Record what we are about to start, before Apify hears of it (status STARTING).
    ``job_attempt`` is the job attempt that creates it (``job_attempts.number``)."""
    row = (
        await conn.execute(
            sa.insert(_t)
            .values(
                job_id=job_id,
                source_connection_id=source_id,
                brand_id=brand_id,
                actor_id=actor_id,
                input=run_input,
                item_cap=item_cap,
                attempt=attempt,
                status=statuses.RunStatus.STARTING,
                account=account,
                # Its raw items are filed under the day the intent is recorded (0008).
                raw_partition_at=sa.func.now(),
                job_attempt=job_attempt,
            )
            .returning(*_t.c)
        )
    ).one()
    return _run(row)


async def update(conn: sa_async.AsyncConnection, run_id: uuid.UUID, **values: Any) -> Run:
    row = (
        await conn.execute(
            sa.update(_t)
            .where(_t.c.id == run_id)
            .values(**values, updated_at=sa.func.now())
            .returning(*_t.c)
        )
    ).one()
    return _run(row)


async def add_counts(
    conn: sa_async.AsyncConnection,
    run_id: uuid.UUID,
    *,
    raw: int,
    created: int,
    updated: int,
    skipped: int,
) -> None:
    """Add one page's counts; the page's items commit in the same transaction."""
    c = _t.c
    await conn.execute(
        sa.update(_t)
        .where(c.id == run_id)
        .values(
            raw_item_count=sa.func.coalesce(c.raw_item_count, 0) + raw,
            normalized_created=sa.func.coalesce(c.normalized_created, 0) + created,
            normalized_updated=sa.func.coalesce(c.normalized_updated, 0) + updated,
            items_skipped=sa.func.coalesce(c.items_skipped, 0) + skipped,
            normalized_item_count=sa.func.coalesce(c.normalized_item_count, 0) + created + updated,
            updated_at=sa.func.now(),
        )
    )


async def seconds_since_start(conn: sa_async.AsyncConnection, run_id: uuid.UUID) -> float:
    """How long ago the run was started, by the database's clock (0 when unknown)."""
    value = await conn.scalar(
        sa.select(
            sa.func.coalesce(
                sa.extract(
                    "epoch", sa.func.now() - sa.func.coalesce(_t.c.started_at, _t.c.intent_at)
                ),
                0,
            )
        ).where(_t.c.id == run_id)
    )
    return float(value or 0)


async def owned_apify_run_ids(
    conn: sa_async.AsyncConnection, *, actor_id: str, since: dt.datetime
) -> set[str]:
    """Apify run ids already recorded for an actor whose runs started since a time (the
    start of the listing window): never adopt these twice.

    Two sources of different brands can send identical input; reconciliation must not
    hand one brand's run to the other's intent. The filter is on the run's recorded
    start, not on its intent's age: an intent recorded long before its run started (it
    waited for a budget slot) still owns a run that the window lists.
    """
    rows = await conn.execute(
        sa.select(_t.c.apify_run_id).where(
            _t.c.actor_id == actor_id,
            _t.c.apify_run_id.is_not(None),
            _t.c.started_at >= since,
        )
    )
    return {r.apify_run_id for r in rows}


@dataclasses.dataclass(frozen=True, slots=True)
class End:
    """A run's end, from its final run object: what :func:`record_end` writes, on every
    path (the job's wait, an adoption, the final look after an abort, the ledger)."""

    status: str
    ended_by: str
    finished_at: dt.datetime | None = None
    dataset_id: str | None = None
    usage_total_usd: float | None = None
    usage: dict[str, Any] | None = None
    max_total_charge_usd: float | None = None
    charged_event_counts: dict[str, int] | None = None
    partial_reason: str | None = None
    error_kind: str | None = None
    error_summary: str | None = None
    aborted: bool = False
    """We asked Apify to abort the run (``abort_requested_at`` is set if it was not)."""


async def record_end(
    conn: sa_async.AsyncConnection, run_id: uuid.UUID, end: End
) -> tuple[Run, bool]:
    """Write the run's end unless one is recorded already: the row as it is afterwards,
    and whether this call wrote it.

    Idempotent, and the first end wins: a row that has ended (terminal or START_FAILED)
    is returned unchanged, so two paths that see the same end (the job's wait and the
    ledger) never fight, and an ended row never goes back to a running status. Fields
    the final run object lacks keep what the row had.
    """
    c = _t.c
    row = (
        await conn.execute(
            sa.update(_t)
            .where(c.id == run_id, c.status.not_in(sorted(statuses.RUN_ENDED)))
            .values(
                status=end.status,
                finished_at=sa.func.coalesce(end.finished_at, c.finished_at, sa.func.now()),
                dataset_id=sa.func.coalesce(end.dataset_id, c.dataset_id),
                usage_total_usd=sa.func.coalesce(end.usage_total_usd, c.usage_total_usd),
                usage=sa.func.coalesce(sa.cast(end.usage, c.usage.type), c.usage),
                max_total_charge_usd=sa.func.coalesce(
                    end.max_total_charge_usd, c.max_total_charge_usd
                ),
                charged_event_counts=sa.func.coalesce(
                    sa.cast(end.charged_event_counts, c.charged_event_counts.type),
                    c.charged_event_counts,
                ),
                partial_reason=end.partial_reason,
                ended_by=end.ended_by,
                error_kind=end.error_kind,
                error_summary=end.error_summary,
                ledger_check_at=None,
                abort_requested_at=(
                    sa.func.coalesce(c.abort_requested_at, sa.func.now())
                    if end.aborted
                    else c.abort_requested_at
                ),
                updated_at=sa.func.now(),
            )
            .returning(*_t.c)
        )
    ).first()
    if row is not None:
        return _run(row), True
    return _run((await conn.execute(sa.select(_t).where(c.id == run_id))).one()), False


async def mark_sent(conn: sa_async.AsyncConnection, run_id: uuid.UUID) -> Run:
    """Record that a start request for the intent is about to be sent (call, commit, send)."""
    return await update(conn, run_id, sent_at=sa.func.now())


async def db_now(conn: sa_async.AsyncConnection) -> dt.datetime:
    value = await conn.scalar(sa.select(sa.func.now()))
    assert isinstance(value, dt.datetime)
    return value
