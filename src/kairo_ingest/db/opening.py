"""A compile job's opening read, in one statement and one round trip.

The job needs the database's ``now()`` (freshness is judged on the database's clock),
the brand's enabled sources, and for each source this job's own latest run (a retry or a
takeover resumes it) and the source's newest reusable run. Read one by one, in
transactions of their own, that was ``3 + 3 x sources`` round trips (BEGIN, SELECT,
ROLLBACK each); here it is one autocommit statement (:func:`read_many`), for every job
that starts at the same time (:mod:`kairo_ingest.pipeline.openings` gathers them)::

    unnest(brand ids, job ids) WITH ORDINALITY AS pair
      LEFT JOIN sources ON the pair's brand's enabled sources
      LEFT JOIN LATERAL the job's own run LEFT JOIN LATERAL the reusable run

so a brand without sources still returns one row (its ``now()``). The reads need no
common snapshot: each run lookup is as good as the separate reads were.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import raw_partitions, runs, sources, tables
from kairo_ingest.domain import statuses

_s = tables.source_connections
_OWN = tables.apify_runs.alias("own_run")
_REUSE = tables.apify_runs.alias("reusable_run")
_SOURCE_FIELDS = [f.name for f in dataclasses.fields(sources.Source)]
_RUN_FIELDS = [f.name for f in dataclasses.fields(runs.Run)]


@dataclasses.dataclass(frozen=True, slots=True)
class SourceState:
    source: sources.Source
    own: runs.Run | None  # this job's latest run of the source
    # the source's newest SUCCEEDED run with raw items stored (and still kept, unless it
    # was normalized already)
    reusable: runs.Run | None


@dataclasses.dataclass(frozen=True, slots=True)
class Opening:
    now: dt.datetime
    sources: list[SourceState]


def _query() -> sa.Select[Any]:
    # One row per (brand, job) pair with no enabled source, else one per source; `ord`
    # says which pair a row answers.
    pairs = (
        sa.func.unnest(
            sa.bindparam("brand_ids", type_=postgresql.ARRAY(_s.c.brand_id.type)),
            sa.bindparam("job_ids", type_=postgresql.ARRAY(_OWN.c.job_id.type)),
        )
        .table_valued(
            sa.column("brand_id", _s.c.brand_id.type),
            sa.column("job_id", _OWN.c.job_id.type),
            with_ordinality="ord",
        )
        .render_derived(name="pair", with_types=False)
    )
    own = (
        sa.select(_OWN)
        .where(_OWN.c.job_id == pairs.c.job_id, _OWN.c.source_connection_id == _s.c.id)
        .order_by(_OWN.c.created_at.desc(), _OWN.c.attempt.desc())
        .limit(1)
        .lateral("own")
    )
    reuse = (
        sa.select(_REUSE)
        .where(
            _REUSE.c.source_connection_id == _s.c.id,
            _REUSE.c.status == statuses.RunStatus.SUCCEEDED,
            _REUSE.c.raw_stored_at.is_not(None),
            # Without its end time a run would sort first and look newest forever
            # (db/runs.py newest_reusable): every end records one; old rows are skipped.
            _REUSE.c.finished_at.is_not(None),
            # A run never normalized is normalized from its raw items, which retention may
            # have dropped: only a run whose raw items are kept may be reused that way.
            sa.or_(
                _REUSE.c.normalized_at.is_not(None),
                _REUSE.c.raw_partition_at >= raw_partitions.DROPPED_BEFORE,
            ),
        )
        .order_by(_REUSE.c.finished_at.desc())
        .limit(1)
        .lateral("reuse")
    )
    return (
        sa.select(
            pairs.c.ord,
            sa.func.now().label("db_now"),
            *[_s.c[name].label(f"s_{name}") for name in _SOURCE_FIELDS],
            *[own.c[name].label(f"o_{name}") for name in _RUN_FIELDS],
            *[reuse.c[name].label(f"r_{name}") for name in _RUN_FIELDS],
        )
        .select_from(
            pairs.outerjoin(_s, sa.and_(_s.c.brand_id == pairs.c.brand_id, _s.c.enabled.is_(True)))
            .outerjoin(own, sa.true())
            .outerjoin(reuse, sa.true())
        )
        .order_by(pairs.c.ord, _s.c.platform, _s.c.capability, _s.c.identifier)
    )


# Built once: constructing the lateral joins' column proxies costs milliseconds of Python
# per call, far more than the statement itself (SQLAlchemy caches its compiled form).
_QUERY = _query()


def _run(m: Any, prefix: str) -> runs.Run | None:
    if m[f"{prefix}id"] is None:
        return None
    return runs.Run(**{name: m[f"{prefix}{name}"] for name in _RUN_FIELDS})


async def read_many(
    conn: sa_async.AsyncConnection, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> list[Opening]:
    """The openings of several jobs, ``(brand_id, job_id)`` each, in one statement, in order."""
    if not pairs:
        return []
    params = {"brand_ids": [b for b, _ in pairs], "job_ids": [j for _, j in pairs]}
    rows = (await conn.execute(_QUERY, params)).all()
    now: dt.datetime = rows[0].db_now  # each pair has at least its clock row
    openings = [Opening(now, []) for _ in pairs]
    for row in rows:
        m = row._mapping
        states = openings[m["ord"] - 1].sources
        if m["s_id"] is None:
            continue  # the brand has no enabled source: the pair's clock row alone
        source = sources.Source(**{name: m[f"s_{name}"] for name in _SOURCE_FIELDS})
        states.append(SourceState(source, _run(m, "o_"), _run(m, "r_")))
    return openings
