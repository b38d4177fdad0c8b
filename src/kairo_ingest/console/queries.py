"""Every SQL statement the console runs to read, in one place, each shaped for an index.

Every function takes a connection from the console's read-only pool (``access.py``), so
one page reads one snapshot. Lists are keyset pages: newest first by ``(created_at, id)``;
the next page starts strictly after the last row shown, so a page costs the same at row
10 and at row 900,000. Each combination of filters is its own statement text, so each
gets its own plan and the index that matches it (a single statement with
``(:x IS NULL OR col = :x)`` would not). The indexes: ``ix_jobs_created_id``,
``ix_jobs_status_created_id``, ``ix_jobs_brand_created``, ``ix_apify_runs_*`` (0003);
``ix_jobs_error_kind_created_id``, ``ix_jobs_last_error_words``,
``ix_apify_runs_actor_created_id``, ``ix_apify_runs_account_created_id``,
``ix_source_connections_platform``, ``ix_source_connections_handle_words`` (0007).
Nothing here counts a whole table.

Times come from the database clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import tables

PAGE_SIZE = 50
HANDLE_BRANDS_LIMIT = 500  # brands one handle may name (a word like "com" names many)
MAX_WORDS = 8

Conn = sa_async.AsyncConnection


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
    conn: Conn, statement: sa.TextClause, params: dict[str, Any]
) -> list[dict[str, Any]]:
    result = await conn.execute(statement, params)
    return [dict(row._mapping) for row in result]


# The words of an error, as ix_jobs_last_error_words (0007) holds them: every run of
# letters, digits and "_" (so markup, URLs and punctuation split into plain words).
ERROR_WORDS = (
    "to_tsvector('simple'::regconfig, "
    "regexp_replace(last_error, '[^[:alnum:]_]+'::text, ' '::text, 'g'::text))"
)


def words(raw: str) -> list[str]:
    """The words of a handle, lowercased: ASCII letters, digits and ``_``, as the handle
    index (0007) splits an identifier."""
    return re.findall(r"[a-z0-9_]+", raw.lower())[:MAX_WORDS]


def error_words(raw: str) -> list[str]:
    """The words of an error search, lowercased: letters (any script), digits and ``_``."""
    return re.findall(r"\w+", raw.lower())[:MAX_WORDS]


def prefix_query(raw: str) -> str | None:
    """A ``to_tsquery`` text matching every word as a prefix (``crash`` finds ``crashed``)."""
    found = error_words(raw)
    return " & ".join(f"{w}:*" for w in found) if found else None


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
    SELECT r.id, r.brand_id, r.status, r.apify_run_id, r.actor_id, r.account, r.created_at,
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


async def overview(conn: Conn, *, window_seconds: float) -> dict[str, Any]:
    """Finished-by-status within the window, failures by kind, runs in flight."""
    p = {"window_seconds": window_seconds}
    finished = {r["status"]: int(r["n"]) for r in await _rows(conn, FINISHED_SINCE, p)}
    estimate = await _rows(conn, JOBS_ESTIMATE, {})
    return {
        "finished": {s: finished.get(s, 0) for s in ("succeeded", "failed", "cancelled")},
        "jobs_estimate": int(estimate[0]["n"]) if estimate else 0,
        "job_failures": await _rows(conn, JOB_FAILURES_BY_KIND, p),
        "run_failures": await _rows(conn, RUN_FAILURES_BY_KIND, p),
        "in_flight": await _rows(conn, RUNS_IN_FLIGHT, {"limit": 20}),
        "in_flight_count": int((await _rows(conn, RUNS_IN_FLIGHT_COUNT, {}))[0]["n"]),
    }


async def throughput(conn: Conn, *, buckets: int, bucket_seconds: int) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"buckets": buckets, "bucket_seconds": bucket_seconds}
    origin = await _rows(conn, THROUGHPUT_ORIGIN, params)
    return await _rows(conn, THROUGHPUT, params | {"t0": origin[0]["t0"]})


# --- jobs -----------------------------------------------------------------------------

_JOB_COLUMNS = (
    "id, kind, brand_id, status, priority, attempts, max_attempts, available_at, "
    "last_error, last_error_kind, created_at, started_at, finished_at"
)


@dataclasses.dataclass(frozen=True, slots=True)
class JobFilter:
    """What the jobs list (and a bulk action on "everything matching") selects.

    ``brand_ids`` is what a handle resolved to (:func:`brands_by_handle`); an empty tuple
    matches nothing, None does not filter.
    """

    status: str | None = None
    kind: str | None = None
    error_kind: str | None = None
    text: str | None = None
    brand_id: uuid.UUID | None = None
    brand_ids: tuple[uuid.UUID, ...] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self, params: dict[str, Any]) -> list[str]:
        """The conditions, with their values added to ``params``."""
        where = []
        if self.status is not None:
            where.append("status = :status")
            params["status"] = self.status
        if self.kind is not None:
            where.append("kind = :kind")
            params["kind"] = self.kind
        if self.error_kind is not None:
            where.append("last_error_kind = :error_kind")
            params["error_kind"] = self.error_kind
        query = prefix_query(self.text) if self.text else None
        if query is not None:
            # The partial GIN index's predicate and expression, exactly as in 0007.
            where.append(
                f"last_error IS NOT NULL AND {ERROR_WORDS} "
                "@@ to_tsquery('simple'::regconfig, :words)"
            )
            params["words"] = query
        if self.brand_id is not None:
            where.append("brand_id = :brand_id")
            params["brand_id"] = self.brand_id
        if self.brand_ids is not None:
            where.append("brand_id = ANY(:brand_ids)")
            params["brand_ids"] = list(self.brand_ids)
        if self.since is not None:
            where.append("created_at >= :since")
            params["since"] = self.since
        if self.until is not None:
            where.append("created_at < :until")
            params["until"] = self.until
        return where


def jobs_page_statement(
    job_filter: JobFilter, *, after: bool
) -> tuple[sa.TextClause, dict[str, Any]]:
    """The keyset query for one combination of filters (each its own plan)."""
    params: dict[str, Any] = {}
    where = job_filter.where(params)
    if after:
        where.append("(created_at, id) < (:after_created_at, :after_id)")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    if "words" in params:
        # Words in the error: the matches come off the GIN index first, then the newest of
        # them. Left to itself the planner may walk every row newest first instead, testing
        # each error, which costs the whole table when the words are rare.
        # Only the keys are materialized and sorted; the page's rows are read by id.
        statement = sa.text(
            f"WITH matched AS MATERIALIZED (SELECT id, created_at FROM jobs {clause}), "
            "page AS (SELECT id FROM matched ORDER BY created_at DESC, id DESC LIMIT :limit) "
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id IN (SELECT id FROM page) "
            "ORDER BY created_at DESC, id DESC"
        )
    else:
        statement = sa.text(
            f"SELECT {_JOB_COLUMNS} FROM jobs {clause} "
            "ORDER BY created_at DESC, id DESC LIMIT :limit"
        )
    return statement, params


async def jobs_page(
    conn: Conn, job_filter: JobFilter, *, after: Cursor | None, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of jobs, newest first, and the cursor of the next page (None at the end)."""
    if job_filter.brand_ids == ():
        return [], None
    statement, params = jobs_page_statement(job_filter, after=after is not None)
    params["limit"] = limit + 1
    if after is not None:
        params["after_created_at"] = after.created_at
        params["after_id"] = after.id
    return _page(await _rows(conn, statement, params), limit)


def _page(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], Cursor | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, Cursor(rows[-1]["created_at"], rows[-1]["id"])


JOB_RUNS = sa.text(
    """
    SELECT r.id, r.source_connection_id, r.status, r.apify_run_id, r.attempt, r.account,
           r.actor_id, r.raw_item_count, r.normalized_item_count, r.error_kind,
           r.error_summary, r.usage_total_usd, r.created_at, r.started_at, r.finished_at,
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


async def job_runs(conn: Conn, job_id: uuid.UUID) -> list[dict[str, Any]]:
    return await _rows(conn, JOB_RUNS, {"job_id": job_id})


async def sources_by_id(conn: Conn, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    if not ids:
        return {}
    return {r["id"]: r for r in await _rows(conn, SOURCES_BY_ID, {"ids": ids})}


# --- runs -----------------------------------------------------------------------------

_RUN_SELECT = """
    SELECT r.id, r.job_id, r.brand_id, r.status, r.apify_run_id, r.actor_id, r.account,
           r.source_connection_id, r.attempt, r.raw_item_count, r.normalized_item_count,
           r.error_kind, r.error_summary, r.usage_total_usd, r.created_at, r.started_at,
           r.finished_at,
           extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at) AS duration_seconds,
           s.platform, s.capability, s.identifier
    FROM (
        SELECT * FROM apify_runs {where} ORDER BY created_at DESC, id DESC LIMIT :limit
    ) r LEFT JOIN source_connections s ON s.id = r.source_connection_id
    ORDER BY r.created_at DESC, r.id DESC
"""


@dataclasses.dataclass(frozen=True, slots=True)
class RunFilter:
    status: str | None = None
    platform: str | None = None
    actor_id: str | None = None
    account: str | None = None
    source_id: uuid.UUID | None = None

    def where(self, params: dict[str, Any]) -> list[str]:
        where = []
        if self.status is not None:
            where.append("status = :status")
            params["status"] = self.status
        if self.platform is not None:
            where.append(
                "source_connection_id IN "
                "(SELECT id FROM source_connections WHERE platform = :platform)"
            )
            params["platform"] = self.platform
        if self.actor_id is not None:
            where.append("actor_id = :actor_id")
            params["actor_id"] = self.actor_id
        if self.account is not None:
            # Runs recorded before accounts existed have none: they ran on `default`.
            if self.account == "default":
                where.append("(account = :account OR account IS NULL)")
            else:
                where.append("account = :account")
            params["account"] = self.account
        if self.source_id is not None:
            where.append("source_connection_id = :source_id")
            params["source_id"] = self.source_id
        return where


def runs_page_statement(
    run_filter: RunFilter, *, after: bool
) -> tuple[sa.TextClause, dict[str, Any]]:
    params: dict[str, Any] = {}
    where = run_filter.where(params)
    if after:
        where.append("(created_at, id) < (:after_created_at, :after_id)")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return sa.text(_RUN_SELECT.format(where=clause)), params


async def runs_page(
    conn: Conn, run_filter: RunFilter, *, after: Cursor | None, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], Cursor | None]:
    statement, params = runs_page_statement(run_filter, after=after is not None)
    params["limit"] = limit + 1
    if after is not None:
        params["after_created_at"] = after.created_at
        params["after_id"] = after.id
    return _page(await _rows(conn, statement, params), limit)


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


async def run_durations(conn: Conn, *, window_seconds: float) -> list[int]:
    """How many runs fell in each duration bucket (``DURATION_EDGES_SECONDS``)."""
    rows = await _rows(
        conn,
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

# The GIN index's expression, exactly as in 0007: every word of the handle must be there.
BRANDS_BY_HANDLE = sa.text(
    """
    SELECT DISTINCT brand_id FROM source_connections
    WHERE regexp_split_to_array(lower(identifier), '[^a-z0-9_]+'::text) @> CAST(:words AS text[])
      AND (CAST(:after AS uuid) IS NULL OR brand_id > CAST(:after AS uuid))
    ORDER BY brand_id LIMIT :limit
    """
)

BRAND_SOURCES = sa.text(
    """
    SELECT s.id, s.brand_id, s.platform, s.capability, s.identifier, s.enabled, s.account,
           n.id AS run_id, n.status AS run_status, n.apify_run_id, n.created_at AS run_created_at,
           n.finished_at AS run_finished_at, n.raw_item_count, n.normalized_item_count,
           n.error_kind, n.error_summary, n.usage_total_usd,
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


async def brands_by_handle(
    conn: Conn, handle: str, *, after: uuid.UUID | None = None, limit: int = HANDLE_BRANDS_LIMIT
) -> list[uuid.UUID]:
    """Brands with a source whose identifier holds every word of ``handle``."""
    found = words(handle)
    if not found:
        return []
    rows = await _rows(conn, BRANDS_BY_HANDLE, {"words": found, "after": after, "limit": limit})
    return [r["brand_id"] for r in rows]


async def brands_page(
    conn: Conn, *, after: uuid.UUID | None, handle: str | None = None, limit: int = 20
) -> tuple[list[tuple[uuid.UUID, list[dict[str, Any]]]], uuid.UUID | None]:
    """Brands in id order (keyset on brand_id), each with its sources and their runs."""
    if handle:
        ids = await brands_by_handle(conn, handle, after=after, limit=limit + 1)
    else:
        ids = [
            r["brand_id"]
            for r in await _rows(conn, BRAND_IDS, {"after": after, "limit": limit + 1})
        ]
    more = len(ids) > limit
    ids = ids[:limit]
    rows = await _rows(conn, BRAND_SOURCES, {"brand_ids": ids}) if ids else []
    grouped: dict[uuid.UUID, list[dict[str, Any]]] = {b: [] for b in ids}
    for row in rows:
        grouped[row["brand_id"]].append(row)
    return list(grouped.items()), (ids[-1] if more else None)


# --- accounts and audit ---------------------------------------------------------------

ACCOUNT_LIMITS = sa.text(
    "SELECT name, max_concurrent_runs, max_memory_mbytes, daily_cap_usd FROM accounts ORDER BY name"
)


async def account_limits(conn: Conn) -> list[dict[str, Any]]:
    return await _rows(conn, ACCOUNT_LIMITS, {})


AUDIT_COLUMNS = (
    "id, created_at, finished_at, actor, via, client, action, target, selection, matched, "
    "changed, unchanged, estimate_usd, state, error"
)


def audit_page_statement(*, after: bool) -> sa.TextClause:
    where = "WHERE (created_at, id) < (:after_created_at, :after_id)" if after else ""
    return sa.text(
        f"SELECT {AUDIT_COLUMNS} FROM console_audit {where} "
        "ORDER BY created_at DESC, id DESC LIMIT :limit"
    )


async def audit_page(
    conn: Conn, *, after: Cursor | None, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], Cursor | None]:
    params: dict[str, Any] = {"limit": limit + 1}
    if after is not None:
        params["after_created_at"] = after.created_at
        params["after_id"] = after.id
    return _page(await _rows(conn, audit_page_statement(after=after is not None), params), limit)


AUDIT_ENTRY = sa.text(f"SELECT {AUDIT_COLUMNS} FROM console_audit WHERE id = :id")


async def audit_entry(conn: Conn, entry_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await _rows(conn, AUDIT_ENTRY, {"id": entry_id})
    return rows[0] if rows else None


# --- replicas and stuck work ----------------------------------------------------------

WORK_LIMIT = 500  # rows per list on the workers page (running jobs are few: replicas x slots)

# Every running job and its holder, by holder: the partial ix_jobs_running_owner (0006)
# holds only running rows, in this order. Not joined to ``workers``: a job held by an
# owner the registry does not know (or no longer knows) is listed all the same.
HELD_JOBS = sa.text(
    """
    SELECT j.id, j.kind, j.brand_id, j.lease_owner, j.claims, j.attempts, j.max_attempts,
           j.attempt_started_at, j.lease_expires_at, j.cancel_requested_at,
           CAST(extract(epoch FROM j.lease_expires_at - now()) AS double precision)
               AS lease_left_seconds
    FROM jobs j
    WHERE j.status = 'running'
    ORDER BY j.lease_owner, j.attempt_started_at, j.id
    LIMIT :limit
    """
)

# Running jobs whose lease ends within :within_seconds (or has ended: the reaper's next),
# soonest first. Filtered over the running rows only (ix_jobs_running_owner): no index
# may hold lease_expires_at, or heartbeats stop being heap-only updates.
LEASES_NEAR_EXPIRY = sa.text(
    """
    SELECT j.id, j.kind, j.brand_id, j.lease_owner, j.claims, j.attempts, j.max_attempts,
           j.attempt_started_at, j.lease_expires_at, j.cancel_requested_at,
           CAST(extract(epoch FROM j.lease_expires_at - now()) AS double precision)
               AS lease_left_seconds
    FROM jobs j
    WHERE j.status = 'running'
      AND j.lease_expires_at
          < now() + make_interval(secs => CAST(:within_seconds AS double precision))
    ORDER BY j.lease_expires_at, j.id
    LIMIT :limit
    """
)

# Apify runs that have not ended and started (else were sent, else intended) longer than
# :over_seconds ago, oldest first: the ledger's partial ix_apify_runs_unended (0005).
LONG_RUNS = sa.text(
    f"""
    SELECT r.id, r.apify_run_id, r.job_id, r.brand_id, r.account, r.status, r.actor_id,
           r.started_at, r.sent_at, r.intent_at, r.released_at, r.abort_requested_at,
           CAST(extract(epoch FROM now() - coalesce(r.started_at, r.sent_at, r.intent_at))
                AS double precision) AS age_seconds
    FROM apify_runs r
    WHERE r.status NOT IN {tables.RUN_ENDED_SQL}
      AND coalesce(r.started_at, r.sent_at, r.intent_at)
          < now() - make_interval(secs => CAST(:over_seconds AS double precision))
    ORDER BY coalesce(r.started_at, r.sent_at, r.intent_at), r.id
    LIMIT :limit
    """
)

# Pending and running jobs with at most one attempt left, oldest first: the partial
# ix_jobs_last_attempt (0009), whose predicate this repeats word for word.
LAST_ATTEMPT = sa.text(
    """
    SELECT j.id, j.kind, j.brand_id, j.status, j.lease_owner, j.attempts, j.max_attempts,
           j.last_error_kind, j.last_error, j.available_at, j.created_at
    FROM jobs j
    WHERE j.status IN ('pending', 'running') AND j.attempts >= j.max_attempts - 1
    ORDER BY j.created_at, j.id
    LIMIT :limit
    """
)


async def held_jobs(conn: Conn, *, limit: int = WORK_LIMIT) -> list[dict[str, Any]]:
    return await _rows(conn, HELD_JOBS, {"limit": limit})


async def stuck_work(
    conn: Conn, *, lease_within_seconds: float, runs_over_seconds: float, limit: int = WORK_LIMIT
) -> dict[str, list[dict[str, Any]]]:
    """Leases about to end, runs going on too long, jobs on their last attempt."""
    return {
        "leases_near_expiry": await _rows(
            conn, LEASES_NEAR_EXPIRY, {"within_seconds": lease_within_seconds, "limit": limit}
        ),
        "long_runs": await _rows(
            conn, LONG_RUNS, {"over_seconds": runs_over_seconds, "limit": limit}
        ),
        "last_attempt": await _rows(conn, LAST_ATTEMPT, {"limit": limit}),
    }
