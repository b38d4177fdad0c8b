"""Every SQL statement the console runs, in one place, each shaped for an index.

Lists are keyset pages: newest first by ``(created_at, id)``, the next page starts
strictly after the last row shown, so a page costs the same at row 10 and at row
900,000 (``ix_jobs_created_id``, ``ix_jobs_status_created_id``, ``ix_apify_runs_*``
from migration 0003). Nothing here counts a whole table: the overview counts the
active part of the queue (partial indexes) and what finished within a window
(``ix_jobs_finished``), and estimates the total from the planner's statistics.

Times come from the database clock. Reads only, except nothing: the two actions go
through :mod:`kairo_ingest.queue.jobs`, the same functions as ``jobs retry`` and
``jobs cancel``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import dberrors

PAGE_SIZE = 50


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """The key of the last row on a page: ``created_at`` and ``id``."""

    created_at: dt.datetime
    id: uuid.UUID

    def encode(self) -> str:
        return f"{self.created_at.isoformat()}_{self.id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        when, _, ident = raw.rpartition("_")
        try:
            return cls(dt.datetime.fromisoformat(when), uuid.UUID(ident))
        except ValueError:
            raise errors.UsageError("bad page cursor") from None


async def _rows(
    engine: sa_async.AsyncEngine, statement: sa.TextClause, params: dict[str, Any]
) -> list[dict[str, Any]]:
    with dberrors.mapped("console"):
        async with engine.connect() as conn:
            result = await conn.execute(statement, params)
            return [dict(row._mapping) for row in result]


# --- overview -------------------------------------------------------------------------

FINISHED_SINCE = sa.text(
    """
    SELECT status, count(*) AS n
    FROM jobs
    WHERE status IN ('succeeded', 'failed', 'cancelled')
      AND finished_at >= now() - make_interval(secs => :window_seconds)
    GROUP BY status
    """
)

# The planner's row estimate: a whole-table count(*) is the one thing that does not
# scale to a million rows on every refresh.
JOBS_ESTIMATE = sa.text(
    "SELECT greatest(reltuples, 0)::bigint AS n FROM pg_class WHERE oid = 'jobs'::regclass"
)

# The first bucket's start, on the database clock: buckets are aligned to whole
# multiples of their width (15:00, 15:15, ...), the last one holds now().
THROUGHPUT_ORIGIN = sa.text(
    """
    SELECT date_bin(make_interval(secs => :bucket_seconds), now(), timestamptz 'epoch')
           - make_interval(secs => :bucket_seconds * (:buckets - 1)) AS t0
    """
)

# Per bucket: jobs enqueued (created_at) and jobs finished (finished_at), by outcome.
# t0 is a plain parameter (not a CTE) so both range scans use their index.
THROUGHPUT = sa.text(
    """
    WITH created AS (
        SELECT floor(extract(epoch FROM created_at - :t0) / :bucket_seconds)::int AS i,
               count(*) AS n
        FROM jobs WHERE created_at >= :t0
        GROUP BY 1
    ), finished AS (
        SELECT floor(extract(epoch FROM finished_at - :t0) / :bucket_seconds)::int AS i,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled
        FROM jobs
        WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at >= :t0
        GROUP BY 1
    )
    SELECT b.i, CAST(:t0 AS timestamptz) + make_interval(secs => :bucket_seconds * b.i)
               AS starts_at,
           coalesce(c.n, 0) AS created,
           coalesce(f.succeeded, 0) AS succeeded,
           coalesce(f.failed, 0) AS failed,
           coalesce(f.cancelled, 0) AS cancelled
    FROM generate_series(0, :buckets - 1) AS b(i)
    LEFT JOIN created c ON c.i = b.i
    LEFT JOIN finished f ON f.i = b.i
    ORDER BY b.i
    """
)

JOB_FAILURES_BY_KIND = sa.text(
    """
    SELECT coalesce(last_error_kind, 'unknown') AS kind, count(*) AS n
    FROM jobs
    WHERE status = 'failed' AND finished_at >= now() - make_interval(secs => :window_seconds)
    GROUP BY 1 ORDER BY n DESC, kind LIMIT 20
    """
)

RUN_FAILURES_BY_KIND = sa.text(
    """
    SELECT coalesce(error_kind, status) AS kind, count(*) AS n
    FROM apify_runs
    WHERE finished_at IS NOT NULL
      AND finished_at >= now() - make_interval(secs => :window_seconds)
      AND (status <> 'SUCCEEDED' OR error_kind IS NOT NULL)
    GROUP BY 1 ORDER BY n DESC, kind LIMIT 20
    """
)

RUNS_IN_FLIGHT = sa.text(
    """
    SELECT r.id, r.brand_id, r.status, r.apify_run_id, r.actor_id, r.created_at,
           extract(epoch FROM now() - coalesce(r.started_at, r.created_at)) AS age_seconds,
           s.platform, s.capability, s.identifier
    FROM apify_runs r JOIN source_connections s ON s.id = r.source_connection_id
    WHERE r.status IN ('STARTING', 'READY', 'RUNNING', 'TIMING-OUT')
    ORDER BY r.created_at
    LIMIT :limit
    """
)

RUNS_IN_FLIGHT_COUNT = sa.text(
    """
    SELECT count(*) AS n FROM apify_runs
    WHERE status IN ('STARTING', 'READY', 'RUNNING', 'TIMING-OUT')
    """
)


async def overview(engine: sa_async.AsyncEngine, *, window_seconds: float) -> dict[str, Any]:
    """Finished-by-status within the window, failures by kind, runs in flight."""
    p = {"window_seconds": window_seconds}
    finished = {r["status"]: int(r["n"]) for r in await _rows(engine, FINISHED_SINCE, p)}
    estimate = await _rows(engine, JOBS_ESTIMATE, {})
    return {
        "finished": {s: finished.get(s, 0) for s in ("succeeded", "failed", "cancelled")},
        "jobs_estimate": int(estimate[0]["n"]) if estimate else 0,
        "job_failures": await _rows(engine, JOB_FAILURES_BY_KIND, p),
        "run_failures": await _rows(engine, RUN_FAILURES_BY_KIND, p),
        "in_flight": await _rows(engine, RUNS_IN_FLIGHT, {"limit": 20}),
        "in_flight_count": int((await _rows(engine, RUNS_IN_FLIGHT_COUNT, {}))[0]["n"]),
    }


async def throughput(
    engine: sa_async.AsyncEngine, *, buckets: int, bucket_seconds: int
) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"buckets": buckets, "bucket_seconds": bucket_seconds}
    origin = await _rows(engine, THROUGHPUT_ORIGIN, params)
    return await _rows(engine, THROUGHPUT, params | {"t0": origin[0]["t0"]})


# --- jobs -----------------------------------------------------------------------------

# Each combination of filters is its own query text, so each gets its own plan and the
# index that matches it (a single statement with "(:x IS NULL OR col = :x)" would not).
_JOB_COLUMNS = (
    "id, kind, brand_id, status, priority, attempts, max_attempts, available_at, "
    "last_error, last_error_kind, created_at, started_at, finished_at"
)


def jobs_page_statement(*, status: bool, brand: bool, kind: bool, after: bool) -> sa.TextClause:
    """The keyset query for one combination of filters (each its own plan)."""
    where = []
    if status:
        where.append("status = :status")
    if brand:
        where.append("brand_id = :brand_id")
    if kind:
        where.append("kind = :kind")
    if after:
        where.append("(created_at, id) < (:after_created_at, :after_id)")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return sa.text(
        f"SELECT {_JOB_COLUMNS} FROM jobs {clause} ORDER BY created_at DESC, id DESC LIMIT :limit"
    )


async def jobs_page(
    engine: sa_async.AsyncEngine,
    *,
    status: str | None,
    brand_id: uuid.UUID | None,
    kind: str | None,
    after: Cursor | None,
    limit: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of jobs, newest first, and the cursor of the next page (None at the end)."""
    statement = jobs_page_statement(
        status=status is not None,
        brand=brand_id is not None,
        kind=kind is not None,
        after=after is not None,
    )
    params: dict[str, Any] = {"limit": limit + 1}
    if status is not None:
        params["status"] = status
    if brand_id is not None:
        params["brand_id"] = brand_id
    if kind is not None:
        params["kind"] = kind
    if after is not None:
        params["after_created_at"] = after.created_at
        params["after_id"] = after.id
    rows = await _rows(engine, statement, params)
    return _page(rows, limit)


def _page(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], Cursor | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, Cursor(rows[-1]["created_at"], rows[-1]["id"])


JOB_RUNS = sa.text(
    """
    SELECT r.id, r.source_connection_id, r.status, r.apify_run_id, r.attempt,
           r.raw_item_count, r.normalized_item_count, r.error_kind, r.error_summary,
           r.created_at, r.started_at, r.finished_at,
           extract(epoch FROM r.finished_at - r.started_at) AS duration_seconds,
           s.platform, s.capability, s.identifier
    FROM apify_runs r LEFT JOIN source_connections s ON s.id = r.source_connection_id
    WHERE r.job_id = :job_id
    ORDER BY r.created_at, r.id
    LIMIT 500
    """
)

SOURCES_BY_ID = sa.text(
    "SELECT id, platform, capability, identifier FROM source_connections WHERE id = ANY(:ids)"
)


async def job_runs(engine: sa_async.AsyncEngine, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return await _rows(engine, JOB_RUNS, {"job_id": job_id})


async def sources_by_id(
    engine: sa_async.AsyncEngine, ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, Any]]:
    if not ids:
        return {}
    return {r["id"]: r for r in await _rows(engine, SOURCES_BY_ID, {"ids": ids})}


# --- runs -----------------------------------------------------------------------------

_RUN_SELECT = """
    SELECT r.id, r.job_id, r.brand_id, r.status, r.apify_run_id, r.actor_id,
           r.raw_item_count, r.normalized_item_count, r.error_kind, r.error_summary,
           r.created_at, r.started_at, r.finished_at,
           extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at) AS duration_seconds,
           s.platform, s.capability, s.identifier
    FROM (
        SELECT * FROM apify_runs {where} ORDER BY created_at DESC, id DESC LIMIT :limit
    ) r LEFT JOIN source_connections s ON s.id = r.source_connection_id
    ORDER BY r.created_at DESC, r.id DESC
"""


def runs_page_statement(*, status: bool, after: bool) -> sa.TextClause:
    where = []
    if status:
        where.append("status = :status")
    if after:
        where.append("(created_at, id) < (:after_created_at, :after_id)")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return sa.text(_RUN_SELECT.format(where=clause))


async def runs_page(
    engine: sa_async.AsyncEngine,
    *,
    status: str | None,
    after: Cursor | None,
    limit: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    params: dict[str, Any] = {"limit": limit + 1}
    if status is not None:
        params["status"] = status
    if after is not None:
        params["after_created_at"] = after.created_at
        params["after_id"] = after.id
    statement = runs_page_statement(status=status is not None, after=after is not None)
    return _page(await _rows(engine, statement, params), limit)


# Run durations of the runs that finished within the window, in fixed buckets (seconds).
DURATION_EDGES_SECONDS = (0, 10, 30, 60, 120, 300, 900, 3600)
RUN_DURATIONS = sa.text(
    """
    SELECT width_bucket(extract(epoch FROM finished_at - started_at),
                        CAST(:edges AS double precision[])) AS bucket,
           count(*) AS n
    FROM apify_runs
    WHERE finished_at IS NOT NULL AND started_at IS NOT NULL
      AND finished_at >= now() - make_interval(secs => :window_seconds)
    GROUP BY 1 ORDER BY 1
    """
)


async def run_durations(engine: sa_async.AsyncEngine, *, window_seconds: float) -> list[int]:
    """How many runs fell in each duration bucket (``DURATION_EDGES_SECONDS``)."""
    rows = await _rows(
        engine,
        RUN_DURATIONS,
        {"edges": [float(e) for e in DURATION_EDGES_SECONDS], "window_seconds": window_seconds},
    )
    counts = [0] * len(DURATION_EDGES_SECONDS)
    for row in rows:
        index = min(max(int(row["bucket"] or 1), 1), len(counts)) - 1
        counts[index] += int(row["n"])
    return counts


# --- brands and sources ---------------------------------------------------------------

BRAND_IDS = sa.text(
    """
    SELECT DISTINCT brand_id FROM source_connections
    WHERE (CAST(:after AS uuid) IS NULL OR brand_id > CAST(:after AS uuid))
    ORDER BY brand_id LIMIT :limit
    """
)

BRAND_SOURCES = sa.text(
    """
    SELECT s.id, s.brand_id, s.platform, s.capability, s.identifier, s.enabled,
           n.id AS run_id, n.status AS run_status, n.apify_run_id, n.created_at AS run_created_at,
           n.finished_at AS run_finished_at, n.raw_item_count, n.normalized_item_count,
           n.error_kind, n.error_summary,
           g.finished_at AS succeeded_at,
           extract(epoch FROM now() - g.finished_at) AS succeeded_age_seconds
    FROM source_connections s
    LEFT JOIN LATERAL (
        SELECT * FROM apify_runs r
        WHERE r.source_connection_id = s.id
        ORDER BY r.created_at DESC LIMIT 1
    ) n ON true
    LEFT JOIN LATERAL (
        SELECT r.finished_at FROM apify_runs r
        WHERE r.source_connection_id = s.id AND r.status = 'SUCCEEDED'
        ORDER BY r.finished_at DESC LIMIT 1
    ) g ON true
    WHERE s.brand_id = ANY(:brand_ids)
    ORDER BY s.brand_id, s.platform, s.capability, s.identifier
    """
)


async def brands_page(
    engine: sa_async.AsyncEngine, *, after: uuid.UUID | None, limit: int = 20
) -> tuple[list[tuple[uuid.UUID, list[dict[str, Any]]]], uuid.UUID | None]:
    """Brands in id order (keyset on brand_id), each with its sources and their runs."""
    ids = [
        r["brand_id"] for r in await _rows(engine, BRAND_IDS, {"after": after, "limit": limit + 1})
    ]
    more = len(ids) > limit
    ids = ids[:limit]
    rows = await _rows(engine, BRAND_SOURCES, {"brand_ids": ids}) if ids else []
    grouped: dict[uuid.UUID, list[dict[str, Any]]] = {b: [] for b in ids}
    for row in rows:
        grouped[row["brand_id"]].append(row)
    return list(grouped.items()), (ids[-1] if more else None)
