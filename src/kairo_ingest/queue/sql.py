"""Every SQL statement of the job queue, written by hand, one named constant each.

Rules that every statement here follows:

* Lease times come from the database's ``now()``; Python passes durations in seconds
  (``make_interval(secs => ...)``), never instants.
* Every write that belongs to a lease holder (heartbeat, complete, retry, snooze,
  fail, release, evidence, fence) is *fenced*: it matches ``lease_token`` and
  ``status = 'running'``, so a worker whose lease was reclaimed, cancelled or
  expired changes nothing. Zero rows is the caller's signal that the lease was lost.
* Multi-row writes are set-based, over rows picked with ``SKIP LOCKED``: concurrent
  workers never wait on each other's rows, and nothing is done as a read-modify-write
  loop in Python.

Fencing and heartbeats (why they cannot starve each other)
----------------------------------------------------------
A lease holder's page transactions take the fence (:data:`FENCE`) first. The fence must
guarantee that nothing such a transaction writes commits after another worker took the
job over, and the lease holder's own heartbeat must extend the lease however many page
transactions are open. PostgreSQL's four row-lock strengths give both at once:

* ``lease_token`` has a plain unique index (``uq_jobs_lease_token``, migration 0002), so
  PostgreSQL counts it as a key column. Every statement that moves a lease on (claim,
  reap, cancel, complete, retry, snooze, fail, release, give-up) changes the token and
  therefore locks the row ``FOR UPDATE``, the strongest mode.
* The fence takes ``FOR KEY SHARE``. It conflicts with ``FOR UPDATE`` only: a takeover
  waits until every open page transaction of the old holder has committed or rolled
  back, and a fence that comes after the takeover re-reads the row, sees a new token and
  raises ``LeaseLostError``. A page transaction therefore never commits after its lease
  moved on.
* The heartbeat changes only ``lease_expires_at``, a non-key column, so it takes
  ``FOR NO KEY UPDATE``, which does not conflict with ``FOR KEY SHARE``: open page
  transactions never stop it (the old fence took ``FOR SHARE``, which does conflict, and
  a heartbeat that skipped busy rows never extended a job that was always ingesting).
* The claim's and the reaper's pickers lock ``FOR UPDATE SKIP LOCKED``, the mode their
  UPDATE needs anyway: a job with an open page transaction is skipped, not waited for.

Alternatives considered: a heartbeat that waits under ``lock_timeout`` for ``FOR SHARE``
holders can still starve when page transactions overlap back to back (there is always a
share lock); lease state on its own row (a ``job_leases`` table) works too but moves a
contract column (``jobs.lease_expires_at``) and doubles every lease write. The key-lock
design changes one lock clause and adds one index; the integration tests pin the
PostgreSQL behaviour it relies on (a token change waits for the fence, a heartbeat
does not).
* Parameters are cast in SQL and JSON travels as text cast to ``jsonb``, so the
  statements do not depend on driver type inference.
* The result columns are typed with the table's own columns, so rows come back
  as ``uuid.UUID``, ``datetime`` and ``dict`` values.
"""

from __future__ import annotations

import sqlalchemy as sa

from kairo_ingest.db import ledger, tables

# The LISTEN/NOTIFY channel; ``enqueue`` and manual ``retry`` notify it with the job kind.
CHANNEL = "kairo_jobs"

# Every column of ``jobs``, in the order ``JobRow`` declares them.
JOB_COLUMNS = (
    "id",
    "kind",
    "brand_id",
    "status",
    "priority",
    "attempts",
    "max_attempts",
    "available_at",
    "lease_owner",
    "lease_token",
    "lease_expires_at",
    "params",
    "evidence_status",
    "last_error",
    "last_error_kind",
    "started_at",
    "finished_at",
    "created_at",
    "updated_at",
)

# The columns a worker needs to run a job it has claimed.
LEASE_COLUMNS = (
    "id",
    "lease_token",
    "lease_owner",
    "kind",
    "brand_id",
    "attempts",
    "max_attempts",
    "params",
)


def _select_list(columns: tuple[str, ...], alias: str) -> str:
    return ", ".join(f"{alias}.{name}" for name in columns)


def _typed(statement: str, columns: tuple[str, ...]) -> sa.TextualSelect:
    return sa.text(statement).columns(*(tables.jobs.c[name] for name in columns))


_JOB = _select_list(JOB_COLUMNS, "j")
_LEASE = _select_list(LEASE_COLUMNS, "j")
_FINISHED = "('succeeded', 'failed', 'cancelled')"

# ---------------------------------------------------------------------------------------
# Enqueue

# Insert one job and announce it, or coalesce into the brand's *pending* job of this kind,
# in one statement (one round trip, one transaction). The conflict target repeats the
# predicate of uq_jobs_pending_per_brand so PostgreSQL infers that index; a running job of
# the brand does not conflict, so enqueueing while it runs creates one follow-up job (and a
# second enqueue coalesces into that follow-up). Coalescing merges force_refresh with OR and
# changes nothing else. `inserted` (xmax = 0 on the returned row version) tells a new row
# from a coalesced one; only a new row is announced. The NOTIFY goes out on commit, never for
# a rolled-back insert; the scalar subquery over `notified` is what makes PostgreSQL run it.
ENQUEUE = sa.text(
    f"""
    WITH upserted AS (
        INSERT INTO jobs AS j (kind, brand_id, params, priority, max_attempts)
        VALUES (
            CAST(:kind AS text), CAST(:brand_id AS uuid), CAST(:params AS jsonb),
            CAST(:priority AS integer), CAST(:max_attempts AS integer)
        )
        ON CONFLICT (kind, brand_id) WHERE status = 'pending' AND brand_id IS NOT NULL
        DO UPDATE SET
            params = CASE
                WHEN EXCLUDED.params -> 'force_refresh' = 'true'::jsonb
                    THEN j.params || '{{"force_refresh": true}}'::jsonb
                ELSE j.params
            END,
            updated_at = now()
        RETURNING {_JOB}, (j.xmax = 0) AS inserted
    ),
    notified AS (
        SELECT pg_notify('{CHANNEL}', u.kind) FROM upserted AS u WHERE u.inserted
    )
    SELECT {_select_list(JOB_COLUMNS, "u")}, u.inserted,
           (SELECT count(*) FROM notified) AS notified
    FROM upserted AS u
    """
).columns(
    *(tables.jobs.c[name] for name in JOB_COLUMNS),
    sa.column("inserted", sa.Boolean),
    sa.column("notified", sa.BigInteger),
)

# The brand's pending job of a kind (what an operator retry conflicted with).
SELECT_PENDING_FOR_BRAND = _typed(
    f"""
    SELECT {_JOB} FROM jobs AS j
    WHERE j.kind = CAST(:kind AS text) AND j.brand_id = CAST(:brand_id AS uuid)
      AND j.status = 'pending'
    """,
    JOB_COLUMNS,
)

# Insert :count identical brand-less jobs and announce them once, in one statement
# (benchmarks, bulk loads).
ENQUEUE_MANY = sa.text(
    f"""
    WITH inserted AS (
        INSERT INTO jobs (kind, params, priority, max_attempts)
        SELECT CAST(:kind AS text), CAST(:params AS jsonb), CAST(:priority AS integer),
               CAST(:max_attempts AS integer)
        FROM generate_series(1, CAST(:count AS integer))
        RETURNING 1
    ),
    notified AS (
        SELECT pg_notify('{CHANNEL}', CAST(:kind AS text)) WHERE EXISTS (SELECT 1 FROM inserted)
    )
    SELECT (SELECT count(*) FROM inserted) AS created, (SELECT count(*) FROM notified) AS notified
    """
).columns(sa.column("created", sa.BigInteger), sa.column("notified", sa.BigInteger))

# Wake idle workers (manual retry). Sent inside the transaction that made the job ready, so
# it is delivered on commit and never for a rolled-back change.
NOTIFY = sa.text(f"SELECT pg_notify('{CHANNEL}', CAST(:kind AS text))")

# A job that goes back to pending while its brand already has a pending follow-up job
# (enqueued while it ran) would make two pending jobs of the brand: the follow-up, which
# lists the brand's sources afresh, supersedes it, so it ends as cancelled instead, its
# error kept with a note. The statements that return a running job to pending (retry,
# snooze, release, reap, give-up) all use these expressions over the alias j.
_SUPERSEDED = (
    "EXISTS (SELECT 1 FROM jobs AS s WHERE s.kind = j.kind AND s.brand_id = j.brand_id"
    " AND s.status = 'pending' AND s.id <> j.id)"
)
_BACK_TO_PENDING = f"CASE WHEN {_SUPERSEDED} THEN 'cancelled' ELSE 'pending' END"
_FINISHED_IF_SUPERSEDED = f"CASE WHEN {_SUPERSEDED} THEN now() END"
SUPERSEDED_NOTE = "; superseded by the brand's pending follow-up job"
_NOTE_IF_SUPERSEDED = (
    f"CASE WHEN {_SUPERSEDED} THEN '{SUPERSEDED_NOTE.replace(chr(39), chr(39) * 2)}' ELSE '' END"
)

# ---------------------------------------------------------------------------------------
# The lease holder's statements

# Claim up to :limit ready jobs in one statement. The CTE walks ix_jobs_claimable in claim
# order and skips rows another claimer has locked, so concurrent workers get disjoint
# batches without waiting. A follow-up job whose brand's job still runs is passed over (one
# probe of uq_jobs_running_per_brand per candidate row; brand-less jobs match nothing), so
# the claim never trips that index and the batch stays one index walk. Each claimed row
# gets a fresh fencing token and a lease that ends :lease_seconds after the database's
# now(). The UPDATE finds the picked rows with `id = ANY(ARRAY(...))`, primary-key lookups
# whatever the statistics say: joined as `FROM picked WHERE j.id = picked.id`, the planner
# hashed the picked ids and scanned the whole table once it held a few tens of thousands
# of rows, so a claim's cost grew with the finished jobs kept (tests read the plan).
CLAIM = _typed(
    f"""
    WITH picked AS (
        SELECT id FROM jobs
        WHERE status = 'pending' AND available_at <= now()
          AND (CAST(:kinds AS text[]) IS NULL OR kind = ANY(CAST(:kinds AS text[])))
          AND NOT EXISTS (
              SELECT 1 FROM jobs AS r
              WHERE r.kind = jobs.kind AND r.brand_id = jobs.brand_id AND r.status = 'running'
          )
        ORDER BY priority, available_at, id
        LIMIT CAST(:limit AS integer)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs AS j
    SET status = 'running',
        attempts = j.attempts + 1,
        lease_owner = CAST(:owner AS text),
        lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => CAST(:lease_seconds AS double precision)),
        started_at = coalesce(j.started_at, now()),
        updated_at = now()
    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING {_LEASE}
    """,
    LEASE_COLUMNS,
)

# The claim must walk ix_jobs_claimable in claim order and stop after :limit rows. Without
# column statistics (a freshly created or bulk-loaded table, until autovacuum's first
# analyze) the planner's default selectivities make it pick a bitmap scan of every ready
# row plus a sort instead: O(ready rows) per claim, measured 170 ms at 200k ready jobs
# against 1 ms for the index walk. A bitmap scan is never the right plan for a claim, so the
# claim turns it off with SET LOCAL inside its own transaction: no session state, so the
# claim is safe behind a transaction-mode pooler (PgBouncer), and nothing leaks to other
# users of the connection.
CLAIM_PLANNER = sa.text("SET LOCAL enable_bitmapscan = off")
# The same for a whole session: only for a direct (not transaction-pooled) connection that
# runs nothing but claims and is closed, never returned to the pool (worker/claiming.py).
# The claim is then one autocommit statement, one round trip instead of four. (Setting it
# inside the claim itself, `set_config(..., true)` in a CTE, would not do: the planner reads
# the setting when it plans the statement, before any of the statement runs.)
CLAIM_PLANNER_SESSION = sa.text("SET enable_bitmapscan = off")

# Extend every lease a process holds, in one statement. (id, token) pairs are matched as
# pairs (unnest of two arrays), and only running rows are extended. FOR NO KEY UPDATE does
# not conflict with the fence's FOR KEY SHARE, so the holder's own page transactions never
# block it. Rows locked FOR UPDATE right now (a takeover, cancel or the holder's own final
# write in progress) are skipped rather than waited for, so one busy row never stalls the
# others; the final SELECT reports, per pair, whether it was extended and whether the row,
# as of this statement's snapshot, is still ours (held but not extended = busy).
HEARTBEAT = sa.text(
    """
    WITH held AS (
        SELECT h.id, h.token
        FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[])) AS h(id, token)
    ),
    locked AS (
        SELECT j.id FROM jobs AS j
        JOIN held AS h ON j.id = h.id AND j.lease_token = h.token
        WHERE j.status = 'running'
        ORDER BY j.id
        FOR NO KEY UPDATE OF j SKIP LOCKED
    ),
    extended AS (
        UPDATE jobs AS j
        SET lease_expires_at = now()
                + make_interval(secs => CAST(:lease_seconds AS double precision)),
            updated_at = now()
        FROM locked
        WHERE j.id = locked.id
        RETURNING j.id, j.lease_token AS token
    )
    SELECT h.id,
           e.id IS NOT NULL AS extended,
           EXISTS (
               SELECT 1 FROM jobs AS j
               WHERE j.id = h.id AND j.lease_token = h.token AND j.status = 'running'
           ) AS held
    FROM held AS h
    LEFT JOIN extended AS e ON e.id = h.id AND e.token = h.token
    """
).columns(tables.jobs.c.id, sa.column("extended", sa.Boolean), sa.column("held", sa.Boolean))

# Mark a batch of jobs succeeded, fenced per (id, token) pair. :evidence holds one JSON text
# per job, or NULL to keep the stored evidence_status. Returns the ids actually completed.
COMPLETE = _typed(
    """
    WITH done AS (
        SELECT d.id, d.token, CAST(d.evidence AS jsonb) AS evidence
        FROM unnest(
            CAST(:ids AS uuid[]), CAST(:tokens AS uuid[]), CAST(:evidence AS text[])
        ) AS d(id, token, evidence)
    )
    UPDATE jobs AS j
    SET status = 'succeeded',
        finished_at = now(),
        lease_token = NULL,
        lease_expires_at = NULL,
        evidence_status = coalesce(done.evidence, j.evidence_status),
        updated_at = now()
    FROM done
    WHERE j.id = done.id AND j.lease_token = done.token AND j.status = 'running'
    RETURNING j.id
    """,
    ("id",),
)

# A retryable failure: back to pending after :delay_seconds (the full-jitter backoff the
# caller computed); the attempt stays spent. Fenced.
RETRY_LATER = _typed(
    f"""
    UPDATE jobs AS j
    SET status = {_BACK_TO_PENDING},
        available_at = now() + make_interval(secs => CAST(:delay_seconds AS double precision)),
        finished_at = {_FINISHED_IF_SUPERSEDED},
        lease_token = NULL,
        lease_expires_at = NULL,
        last_error = CAST(:error AS text) || {_NOTE_IF_SUPERSEDED},
        last_error_kind = CAST(:error_kind AS text),
        evidence_status = coalesce(CAST(:evidence AS jsonb), j.evidence_status),
        updated_at = now()
    WHERE j.id = CAST(:id AS uuid) AND j.lease_token = CAST(:token AS uuid)
      AND j.status = 'running'
    RETURNING j.id
    """,
    ("id",),
)

# "Not now" (rate limited, Apify concurrency or memory limit): back to pending after
# :delay_seconds with the attempt refunded, so waiting never exhausts max_attempts. Fenced.
SNOOZE = _typed(
    f"""
    UPDATE jobs AS j
    SET status = {_BACK_TO_PENDING},
        available_at = now() + make_interval(secs => CAST(:delay_seconds AS double precision)),
        finished_at = {_FINISHED_IF_SUPERSEDED},
        attempts = greatest(j.attempts - 1, 0),
        lease_token = NULL,
        lease_expires_at = NULL,
        last_error = CAST(:error AS text) || {_NOTE_IF_SUPERSEDED},
        last_error_kind = CAST(:error_kind AS text),
        evidence_status = coalesce(CAST(:evidence AS jsonb), j.evidence_status),
        updated_at = now()
    WHERE j.id = CAST(:id AS uuid) AND j.lease_token = CAST(:token AS uuid)
      AND j.status = 'running'
    RETURNING j.id
    """,
    ("id",),
)

# Terminal failure (permanent error, or attempts exhausted), keeping the error. Fenced.
FAIL = _typed(
    """
    UPDATE jobs
    SET status = 'failed',
        finished_at = now(),
        lease_token = NULL,
        lease_expires_at = NULL,
        last_error = CAST(:error AS text),
        last_error_kind = CAST(:error_kind AS text),
        evidence_status = coalesce(CAST(:evidence AS jsonb), evidence_status),
        updated_at = now()
    WHERE id = CAST(:id AS uuid) AND lease_token = CAST(:token AS uuid) AND status = 'running'
    RETURNING id
    """,
    ("id",),
)

# Shutdown: hand the given leases back at once, ready now, with the interrupted attempt
# refunded, so no job waits for its lease to expire after a deploy. Fenced per pair.
RELEASE = _typed(
    f"""
    UPDATE jobs AS j
    SET status = {_BACK_TO_PENDING},
        available_at = now(),
        finished_at = {_FINISHED_IF_SUPERSEDED},
        attempts = greatest(j.attempts - 1, 0),
        lease_token = NULL,
        lease_expires_at = NULL,
        last_error = CASE WHEN {_SUPERSEDED}
            THEN 'released at shutdown' || {_NOTE_IF_SUPERSEDED} ELSE j.last_error END,
        last_error_kind = CASE WHEN {_SUPERSEDED}
            THEN CAST(:cancelled_kind AS text) ELSE j.last_error_kind END,
        updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[])) AS r(id, token)
    WHERE j.id = r.id AND j.lease_token = r.token AND j.status = 'running'
    RETURNING j.id
    """,
    ("id",),
)

# A lease holder gives a job up (its heartbeat could not extend the lease in time): hand it
# back at once, fenced per pair, instead of letting it wait for expiry and the reaper. The
# attempt stays spent (unlike RELEASE at shutdown); a job out of attempts fails with the
# lease_lost kind, as the reaper would fail it.
GIVE_UP = sa.text(
    f"""
    UPDATE jobs AS j
    SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE {_BACK_TO_PENDING} END,
        available_at = CASE WHEN j.attempts >= j.max_attempts THEN j.available_at ELSE now() END,
        finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now()
            ELSE {_FINISHED_IF_SUPERSEDED} END,
        lease_token = NULL,
        lease_expires_at = NULL,
        last_error = 'lease of ' || coalesce(j.lease_owner, 'unknown worker')
            || ' given up during attempt ' || j.attempts
            || ': heartbeats could not extend it in time' || {_NOTE_IF_SUPERSEDED},
        last_error_kind = CAST(:error_kind AS text),
        updated_at = now()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[])) AS r(id, token)
    WHERE j.id = r.id AND j.lease_token = r.token AND j.status = 'running'
    RETURNING j.id, j.status
    """
).columns(tables.jobs.c.id, tables.jobs.c.status)

# The pipeline's fence, inside its own transaction: the row must still be ours. FOR KEY
# SHARE lets a job's concurrent source transactions and its heartbeat proceed together,
# while a reclaim, cancel or completion (which change the key column lease_token and so
# lock FOR UPDATE) waits for them to end, so nothing a stale worker writes can commit after
# its lease has moved on (see the module docstring).
FENCE = sa.text(
    """
    SELECT 1 FROM jobs
    WHERE id = CAST(:id AS uuid) AND lease_token = CAST(:token AS uuid) AND status = 'running'
    FOR KEY SHARE
    """
)

# The heartbeat runs in a short transaction of its own on its dedicated connection, with a
# statement timeout shorter than the beat interval (milliseconds, as text).
BEAT_TIMEOUT = sa.text("SELECT set_config('statement_timeout', CAST(:ms AS text), true)")

# ---------------------------------------------------------------------------------------
# Maintenance

# Reclaim expired leases in one set-based statement. Rows are locked with SKIP LOCKED, and
# the outer WHERE re-checks status and expiry on the locked row version, so a job that was
# completed or heartbeated after the scan began is left alone. Jobs with attempts left go
# back to pending after a full-jitter backoff computed here
# (random() * least(cap, base * 2^(attempts-1))), so a job that crashes its worker every
# time cannot loop hot; exhausted jobs fail with the lease_lost kind.
REAP = sa.text(
    f"""
    WITH expired AS (
        SELECT id FROM jobs
        WHERE status = 'running' AND lease_expires_at < now()
        ORDER BY lease_expires_at
        LIMIT CAST(:limit AS integer)
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs AS j
    SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE {_BACK_TO_PENDING} END,
        available_at = CASE
            WHEN j.attempts >= j.max_attempts THEN j.available_at
            ELSE now() + make_interval(secs => random() * least(
                CAST(:cap_seconds AS double precision),
                CAST(:base_seconds AS double precision)
                    * power(2.0, least(greatest(j.attempts, 1) - 1, 60))
            ))
        END,
        finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now()
            ELSE {_FINISHED_IF_SUPERSEDED} END,
        lease_token = NULL,
        lease_expires_at = NULL,
        last_error = 'lease of ' || coalesce(j.lease_owner, 'unknown worker')
            || ' expired during attempt ' || j.attempts || {_NOTE_IF_SUPERSEDED},
        last_error_kind = CAST(:error_kind AS text),
        updated_at = now()
    FROM expired
    WHERE j.id = expired.id AND j.status = 'running' AND j.lease_expires_at < now()
    RETURNING j.id, j.status
    """
).columns(tables.jobs.c.id, tables.jobs.c.status)

# Operator cancel of a pending or running job. Clearing the token makes the owner's next
# heartbeat miss, so it cancels the handler and writes nothing more. The NOTIFY, delivered
# when the cancel commits, wakes the run ledger (db/ledger.py), which aborts the job's runs.
CANCEL = _typed(
    f"""
    UPDATE jobs AS j
    SET status = 'cancelled',
        finished_at = now(),
        lease_token = NULL,
        lease_expires_at = NULL,
        last_error_kind = CAST(:error_kind AS text),
        updated_at = now()
    WHERE j.id = CAST(:id AS uuid) AND j.status IN ('pending', 'running')
    RETURNING {_JOB}, pg_notify('{ledger.CHANNEL}', CAST(j.id AS text)) IS NULL AS ledger_woken
    """,
    JOB_COLUMNS,
)

# Operator retry of a failed or cancelled job: pending, ready now, attempts reset. May
# violate uq_jobs_pending_per_brand when the brand already has a pending job of the kind
# (with a running one it becomes that job's follow-up).
RETRY_JOB = _typed(
    f"""
    UPDATE jobs AS j
    SET status = 'pending',
        available_at = now(),
        attempts = 0,
        finished_at = NULL,
        lease_token = NULL,
        lease_expires_at = NULL,
        updated_at = now()
    WHERE j.id = CAST(:id AS uuid) AND j.status IN ('failed', 'cancelled')
    RETURNING {_JOB}
    """,
    JOB_COLUMNS,
)

# One job by id.
SELECT_JOB = _typed(f"SELECT {_JOB} FROM jobs AS j WHERE j.id = CAST(:id AS uuid)", JOB_COLUMNS)

# Jobs, newest first, optionally by status and brand.
LIST_JOBS = _typed(
    f"""
    SELECT {_JOB} FROM jobs AS j
    WHERE (CAST(:status AS text) IS NULL OR j.status = CAST(:status AS text))
      AND (CAST(:brand_id AS uuid) IS NULL OR j.brand_id = CAST(:brand_id AS uuid))
    ORDER BY j.created_at DESC, j.id DESC
    LIMIT CAST(:limit AS integer)
    """,
    JOB_COLUMNS,
)

# Delete one bounded batch of finished jobs older than the retention, oldest first, along
# ix_jobs_finished. Callers loop until a batch comes back short. The doomed rows are found
# by primary key, as the claim's are (a join let the planner scan the whole table).
PRUNE = sa.text(
    f"""
    WITH doomed AS (
        SELECT id FROM jobs
        WHERE status IN {_FINISHED}
          AND finished_at
              < now() - make_interval(secs => CAST(:older_than_seconds AS double precision))
        ORDER BY finished_at
        LIMIT CAST(:batch AS integer)
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM jobs AS j WHERE j.id = ANY(ARRAY(SELECT id FROM doomed))
    """
)

# Counts per status, how many jobs are ready, and the age of the oldest ready job
# (seconds, by the database clock; NULL when none is ready).
STATS = sa.text(
    """
    SELECT
        coalesce(
            (SELECT jsonb_object_agg(s.status, s.n)
             FROM (SELECT status, count(*) AS n FROM jobs GROUP BY status) AS s),
            '{}'::jsonb
        ) AS counts,
        (SELECT count(*) FROM jobs WHERE status = 'pending' AND available_at <= now()) AS ready,
        (SELECT CAST(extract(epoch FROM now() - min(available_at)) AS double precision)
         FROM jobs WHERE status = 'pending' AND available_at <= now()) AS oldest_ready_age_seconds
    """
).columns(
    sa.column("counts", tables.jobs.c.params.type),
    sa.column("ready", sa.BigInteger),
    sa.column("oldest_ready_age_seconds", sa.Float),
)

# The worker's periodic sample: active counts and the oldest ready job's age (seconds, by
# the database clock), read through the partial indexes on active rows only, so it stays
# cheap however many finished rows the table keeps. (STATS counts every status.)
DEPTH = sa.text(
    """
    SELECT
        (SELECT count(*) FROM jobs WHERE status = 'pending') AS pending,
        (SELECT count(*) FROM jobs WHERE status = 'pending' AND available_at <= now()) AS ready,
        (SELECT count(*) FROM jobs WHERE status = 'running') AS running,
        (SELECT CAST(extract(epoch FROM now() - min(available_at)) AS double precision)
         FROM jobs WHERE status = 'pending' AND available_at <= now()) AS oldest_ready_age_seconds
    """
).columns(
    sa.column("pending", sa.BigInteger),
    sa.column("ready", sa.BigInteger),
    sa.column("running", sa.BigInteger),
    sa.column("oldest_ready_age_seconds", sa.Float),
)

# A pending job is *ready* once its available_at has come; the rest of the pending rows wait
# on a backoff, a snooze or a budget. The per-kind gauges and the autoscaler's query below
# both count with this one predicate, so a change to what "ready" means changes both (and
# the test that holds the deployment's scaler query to AUTOSCALER_DEMAND says so).
READY = "status = 'pending' AND available_at <= now()"

# Ready and running jobs per kind (the worker's sampler: kairo_queue_ready_jobs and
# kairo_queue_running_jobs). Both halves of the OR are partial-index reads of active rows.
READY_BY_KIND = sa.text(
    f"""
    SELECT kind,
           count(*) FILTER (WHERE {READY}) AS ready,
           count(*) FILTER (WHERE status = 'running') AS running
    FROM jobs
    WHERE ({READY}) OR status = 'running'
    GROUP BY kind
    """
).columns(
    tables.jobs.c.kind, sa.column("ready", sa.BigInteger), sa.column("running", sa.BigInteger)
)

# What the autoscaler scales compile workers on (KEDA's postgresql trigger runs it as it is:
# deploy/kubernetes/base/worker-scaledobject.yaml carries this exact text): the compile jobs
# that want a slot now, ready or running. Running jobs count too, so a replica busy with
# long jobs is not scaled away under them (desired replicas = ceil(demand / concurrency)).
# Equal to kairo_queue_ready_jobs{kind="compile"} + kairo_queue_running_jobs{kind="compile"}.
AUTOSCALER_DEMAND = (
    f"SELECT count(*) FROM jobs WHERE kind = 'compile' AND (({READY}) OR status = 'running')"
)

# Drain mode's question: is any job (of the given kinds) ready now, or running anywhere?
HAS_READY_OR_RUNNING = sa.text(
    """
    SELECT EXISTS (
        SELECT 1 FROM jobs
        WHERE ((status = 'pending' AND available_at <= now()) OR status = 'running')
          AND (CAST(:kinds AS text[]) IS NULL OR kind = ANY(CAST(:kinds AS text[])))
    ) AS busy
    """
).columns(sa.column("busy", sa.Boolean))

# Drain mode's report on exit: how many pending jobs (of the given kinds) wait on a backoff
# or snooze, and when the first of them becomes ready (by the database clock).
WAITING_ON_BACKOFF = sa.text(
    """
    SELECT count(*) AS waiting, min(available_at) AS next_at
    FROM jobs
    WHERE status = 'pending' AND available_at > now()
      AND (CAST(:kinds AS text[]) IS NULL OR kind = ANY(CAST(:kinds AS text[])))
    """
).columns(sa.column("waiting", sa.BigInteger), tables.jobs.c.available_at.label("next_at"))

# The LISTEN connection's liveness probe (a plain string: it runs on a raw asyncpg
# connection, not through SQLAlchemy).
LISTENER_PING = "SELECT 1"
