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
    account: str | None = None
    usage_total_usd: Any = None
    """Decimal USD from Apify's final run object (``usageTotalUsd``), None until known."""
    usage: dict[str, Any] | None = None


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
    account: str | None = None,
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
    """Apify run ids already recorded for an actor since a time: never adopt these twice.

    Two sources of different brands can send identical input; reconciliation must not
    hand one brand's run to the other's intent.
    """
    rows = await conn.execute(
        sa.select(_t.c.apify_run_id).where(
            _t.c.actor_id == actor_id,
            _t.c.apify_run_id.is_not(None),
            _t.c.intent_at >= since,
        )
    )
    return {r.apify_run_id for r in rows}


async def db_now(conn: sa_async.AsyncConnection) -> dt.datetime:
    value = await conn.scalar(sa.select(sa.func.now()))
    assert isinstance(value, dt.datetime)
    return value
