"""Every SQL statement of the job queue, written by hand, one named constant each.

Rules that every statement here follows:

* Lease times come from the database's ``now()``; Python passes durations in seconds
  (``make_interval(secs => ...)``), never instants.
* Every write that belongs to a lease holder (heartbeat, the end of an attempt,
  evidence, fence) is *fenced*: it matches ``lease_token`` and ``status = 'running'``,
  so a worker whose lease was reclaimed or finished changes nothing. Zero rows is the
  caller's signal that the lease was lost.
* Every end of an attempt (complete, retry, snooze, fail, cancel, release, give-up,
  reap, hand-back) goes through one template (:func:`_ending`): it moves the job on and
  records the attempt in ``job_attempts`` in the same statement, so history and state
  never disagree.
* Multi-row writes are set-based, over rows picked with ``SKIP LOCKED``: concurrent
  workers never wait on each other's rows, and nothing is done as a read-modify-write
  loop in Python.
* Parameters are cast in SQL and JSON travels as text cast to ``jsonb``, so the
  statements do not depend on driver type inference.
* The result columns are typed with the table's own columns, so rows come back
  as ``uuid.UUID``, ``datetime`` and ``dict`` values.

Why the fence and the heartbeat never block each other (PostgreSQL's row-lock strengths),
why heartbeats are heap-only and why a claim never walks deferred rows: docs/queue.md.
"""

from __future__ import annotations

import sqlalchemy as sa

from kairo_ingest.db import ledger_queries, tables
from kairo_ingest.domain import endings as ending_rules
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.domain import statuses

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
    "claims",
    "attempt_started_at",
    "interruptions",
    "snoozes",
    "deferred",
    "cancel_requested_at",
    "traceparent",
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
    "claims",
    "traceparent",
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

# Insert one job and announce it, or fold the request into the brand's *pending* job of this
# kind, in one statement (one round trip, one transaction). The conflict target repeats the
# predicate of uq_jobs_pending_per_brand so PostgreSQL infers that index; a running job of
# the brand does not conflict, so enqueueing while it runs creates one follow-up job (and a
# second enqueue folds into that follow-up). Folding never drops what was asked: it takes
# the strongest of both requests (force_refresh OR'ed, the lower priority value, the most
# attempts left) and resets the pending job's backoff (ready now). `inserted` (xmax = 0 on
# the returned row version) tells a new row from a folded one. Both are announced (a folded
# job may have just become ready); the NOTIFY goes out on commit, never for a rolled-back
# insert; the scalar subquery over `notified` is what makes PostgreSQL run it.
ENQUEUE = sa.text(
    f"""
    WITH upserted AS (
        INSERT INTO jobs AS j (kind, brand_id, params, priority, max_attempts, traceparent)
        VALUES (
            CAST(:kind AS text), CAST(:brand_id AS uuid), CAST(:params AS jsonb),
            CAST(:priority AS integer), CAST(:max_attempts AS integer),
            CAST(:traceparent AS text)
        )
        ON CONFLICT (kind, brand_id) WHERE status = 'pending' AND brand_id IS NOT NULL
        DO UPDATE SET
            params = CASE
                WHEN EXCLUDED.params -> 'force_refresh' = 'true'::jsonb
                    THEN j.params || '{{"force_refresh": true}}'::jsonb
                ELSE j.params
            END,
            priority = least(j.priority, EXCLUDED.priority),
            max_attempts = j.attempts
                + greatest(j.max_attempts - j.attempts, EXCLUDED.max_attempts),
            available_at = least(j.available_at, now()),
            deferred = false,
            traceparent = coalesce(j.traceparent, EXCLUDED.traceparent),
            updated_at = now()
        RETURNING {_JOB}, (j.xmax = 0) AS inserted
    ),
    notified AS (
        SELECT pg_notify('{CHANNEL}', u.kind) FROM upserted AS u
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
# error kept with a note, and what it was asked for (force_refresh, priority, attempts
# left) is merged into the follow-up, whose backoff is reset (see _ending).
_SUPERSEDED = (
    "EXISTS (SELECT 1 FROM jobs AS s WHERE s.kind = j.kind AND s.brand_id = j.brand_id"
    " AND s.status = 'pending' AND s.id <> j.id)"
)
SUPERSEDED_NOTE = "; superseded by the brand's pending follow-up job"
CANCELLED_NOTE = "; cancelled by an operator"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------
# The lease holder's statements

# Claim up to :limit ready jobs in one statement. The CTE walks ix_jobs_claimable (ready
# rows only: deferred ones are not in it) in claim order and skips rows another claimer
# has locked, so concurrent workers get disjoint
# batches without waiting. A follow-up job whose brand's job still runs is passed over (one
# probe of uq_jobs_running_per_brand per candidate row; brand-less jobs match nothing), so
# the claim never trips that index and the batch stays one index walk. Each claimed row
# gets a fresh fencing token and a lease that ends :lease_seconds after the database's
# now(). The UPDATE finds the picked rows with `id = ANY(ARRAY(...))`, primary-key lookups
# whatever the statistics say: joined as `FROM picked WHERE j.id = picked.id`, the planner
# hashed the picked ids and scanned the whole table once it held a few tens of thousands
# of rows, so a claim's cost grew with the finished jobs kept (tests read the plan). Each
# claim numbers its attempt (claims + 1: job_attempts.number, Lease.attempt_number).
CLAIM = _typed(
    f"""
    WITH picked AS (
        SELECT id FROM jobs
        WHERE status = 'pending' AND NOT deferred AND available_at <= now()
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
        claims = j.claims + 1,
        lease_owner = CAST(:owner AS text),
        lease_token = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => CAST(:lease_seconds AS double precision)),
        started_at = coalesce(j.started_at, now()),
        attempt_started_at = now(),
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

# Extend every lease a process holds, in one statement, and mark the process alive in
# `workers`. (id, token) pairs are matched as pairs (unnest of two arrays), and only running
# rows are extended. FOR NO KEY UPDATE does not conflict with the fence's FOR KEY SHARE, so
# the holder's own page transactions never block it. Rows locked FOR UPDATE right now (a
# takeover or the holder's own final write in progress) are skipped rather than waited for,
# so one busy row never stalls the others; the final SELECT reports, per pair, whether it
# was extended, whether the row, as of this statement's snapshot, is still ours (held but
# not extended = busy), and whether an operator asked to cancel it. The beat writes only
# lease_expires_at and updated_at, which no index contains: a heap-only (HOT) update.
# `registered` upserts the process's row in `workers` (its own statement's CTE: a beat
# stays one statement; a data-modifying CTE runs whether or not the SELECT reads it).
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
        RETURNING j.id, j.lease_token AS token, j.cancel_requested_at IS NOT NULL AS cancelling
    ),
    registered AS (
        INSERT INTO workers AS w
            (owner, hostname, pid, version, concurrency, heartbeat_interval_seconds)
        SELECT CAST(:owner AS text), CAST(:hostname AS text), CAST(:pid AS integer),
               CAST(:version AS text), CAST(:concurrency AS integer),
               CAST(:interval_seconds AS double precision)
        WHERE CAST(:owner AS text) IS NOT NULL
        ON CONFLICT (owner) DO UPDATE SET last_beat_at = now(), stopped_at = NULL
        RETURNING 1
    )
    SELECT h.id,
           e.id IS NOT NULL AS extended,
           EXISTS (
               SELECT 1 FROM jobs AS j
               WHERE j.id = h.id AND j.lease_token = h.token AND j.status = 'running'
           ) AS held,
           coalesce(e.cancelling, EXISTS (
               SELECT 1 FROM jobs AS j
               WHERE j.id = h.id AND j.lease_token = h.token AND j.status = 'running'
                 AND j.cancel_requested_at IS NOT NULL
           )) AS cancelling
    FROM held AS h
    LEFT JOIN extended AS e ON e.id = h.id AND e.token = h.token
    """
).columns(
    tables.jobs.c.id,
    sa.column("extended", sa.Boolean),
    sa.column("held", sa.Boolean),
    sa.column("cancelling", sa.Boolean),
)

# ---------------------------------------------------------------------------------------
# The end of an attempt
#
# One template ends attempts, whatever ended them. Its input (the CTE `e`) is one row per
# attempt: the job id and lease token it holds, how the attempt ended (`outcome`, a
# domain.statuses.AttemptOutcome), the error (kind and message) to keep, the delay before
# the job is ready again (when it goes back to pending), whether the caller decided to
# fail it for good (`terminal`), and evidence_status (JSON text, or NULL to keep the
# stored one). From that and the row, in one statement:
#
# * the job's next status: succeeded; cancelled when cancelled (by the lease holder, or as
#   asked by an operator: cancel_requested_at, whatever else ended the attempt, unless it
#   succeeded); failed when the caller said so or a cap is hit (the :max_interruptions-th
#   interruption, the :max_snoozes-th snooze); cancelled when superseded by the brand's
#   pending follow-up; else pending, after the delay (deferred when the delay is not 0);
# * refunds: a snooze, a release, a give-up, a reap and a hand-back give the attempt back
#   (`attempts` counts only attempts a handler spent). Releases, give-ups and reaps count
#   as `interruptions`, snoozes as `snoozes`, each against its own cap, so a job that keeps
#   wedging its worker ends failed with that reason instead of looping for ever;
# * the attempt's row in job_attempts (number = claims, the owner, its start, its end, its
#   outcome, the job's status after it, the error); last_error and last_error_kind keep
#   the last real error (a success, and a release or hand-back that goes back to pending,
#   leave them as they are);
# * a superseded job's request merged into its follow-up (force_refresh OR'ed, the lower
#   priority value, the most attempts left; backoff reset).
#
# Fenced: only rows still running under the given token change. Returns (id, status) of
# each job that moved on.
#
# The rules are domain/endings.py's, which the in-memory queue applies in Python: the
# outcome lists below are built from its sets, and the CASEs state its functions
# (_NEXT_STATUS is next_status, _keeps_last_error keeps_last_error), in the same order.


def _outcomes(outcomes: frozenset[statuses.AttemptOutcome]) -> str:
    return "(" + ", ".join(_quoted(o.value) for o in ending_rules.in_order(outcomes)) + ")"


_INTERRUPTED = _outcomes(ending_rules.INTERRUPTED)
_REFUNDED = _outcomes(ending_rules.REFUNDED)
_KEEP_ERROR_WHEN_PENDING = _outcomes(ending_rules.KEEP_ERROR_WHEN_PENDING)
_CANCEL_ASKED = "(e.outcome = 'cancelled' OR j.cancel_requested_at IS NOT NULL)"
_INTERRUPTION_CAP = (
    f"(e.outcome IN {_INTERRUPTED} AND j.interruptions + 1 >= CAST(:max_interruptions AS integer))"
)
_SNOOZE_CAP = "(e.outcome = 'snoozed' AND j.snoozes + 1 >= CAST(:max_snoozes AS integer))"
# An operator's cancel wins over whatever the attempt ended with, a success included: the
# run ledger aborts a cancelled job's runs at once, so a "success" after the cancel holds
# only what those runs had paid for (its evidence status is kept on the cancelled job).
_NEXT_STATUS = f"""(CASE
            WHEN {_CANCEL_ASKED} THEN 'cancelled'
            WHEN e.outcome = 'succeeded' THEN 'succeeded'
            WHEN e.terminal OR {_INTERRUPTION_CAP} OR {_SNOOZE_CAP} THEN 'failed'
            WHEN {_SUPERSEDED} THEN 'cancelled'
            ELSE 'pending'
        END)"""
# What the stored error gets appended, in the same order as _NEXT_STATUS decides.
_NOTE = f"""(CASE
            WHEN e.outcome = 'succeeded' AND j.cancel_requested_at IS NOT NULL
                THEN 'cancelled by an operator after its attempt had done its work'
            WHEN e.outcome IN ('succeeded', 'cancelled') THEN ''
            WHEN j.cancel_requested_at IS NOT NULL THEN {_quoted(CANCELLED_NOTE)}
            WHEN e.terminal THEN ''
            WHEN {_INTERRUPTION_CAP} THEN '; interrupted ' || (j.interruptions + 1)
                || ' times (released, given up or reaped), the cap: the job keeps wedging'
                || ' its worker'
            WHEN {_SNOOZE_CAP} THEN '; snoozed ' || (j.snoozes + 1) || ' times, the cap'
            WHEN {_SUPERSEDED} THEN {_quoted(SUPERSEDED_NOTE)}
            ELSE ''
        END)"""


def _keeps_last_error(status: str) -> str:
    """True where the job keeps its stored last_error: a success (not overruled by a
    cancel), or a release or hand-back that puts it back to pending (nothing went wrong
    with the job itself)."""
    return (
        f"((e.outcome = 'succeeded' AND {status} = 'succeeded')"
        f" OR (e.outcome IN {_KEEP_ERROR_WHEN_PENDING}"
        f" AND {status} = 'pending'))"
    )


def _ending(source: str, *, recheck: str = "") -> sa.TextualSelect:
    """The statement that ends the attempts ``source`` selects (columns: id, token,
    outcome, error, error_kind, delay_seconds, terminal, evidence); ``recheck`` adds to
    the fenced WHERE (re-evaluated on the row version the UPDATE locks)."""
    return sa.text(
        f"""
    WITH e AS ({source}),
    ended AS (
        UPDATE jobs AS j
        SET status = {_NEXT_STATUS},
            available_at = CASE WHEN {_NEXT_STATUS} = 'pending'
                THEN now() + make_interval(secs => e.delay_seconds)
                ELSE j.available_at END,
            deferred = {_NEXT_STATUS} = 'pending' AND e.delay_seconds > 0,
            finished_at = CASE WHEN {_NEXT_STATUS} = 'pending' THEN j.finished_at
                ELSE now() END,
            attempts = CASE WHEN e.outcome IN {_REFUNDED}
                THEN greatest(j.attempts - 1, 0) ELSE j.attempts END,
            interruptions = j.interruptions
                + CASE WHEN e.outcome IN {_INTERRUPTED} THEN 1 ELSE 0 END,
            snoozes = j.snoozes + CASE WHEN e.outcome = 'snoozed' THEN 1 ELSE 0 END,
            lease_token = NULL,
            lease_expires_at = NULL,
            last_error = CASE WHEN {_keeps_last_error(_NEXT_STATUS)} THEN j.last_error
                ELSE nullif(coalesce(e.error, '') || {_NOTE}, '') END,
            last_error_kind = CASE WHEN {_keeps_last_error(_NEXT_STATUS)} THEN j.last_error_kind
                WHEN {_CANCEL_ASKED} THEN 'cancelled'
                ELSE e.error_kind END,
            evidence_status = coalesce(CAST(e.evidence AS jsonb), j.evidence_status),
            updated_at = now()
        FROM e
        WHERE j.id = e.id AND j.lease_token = e.token AND j.status = 'running' {recheck}
        RETURNING j.id, j.kind, j.brand_id, j.status, j.claims, j.lease_owner,
                  j.attempt_started_at, j.priority, j.params,
                  j.max_attempts - j.attempts AS attempts_left,
                  j.status = 'cancelled' AND e.outcome <> 'cancelled'
                      AND j.cancel_requested_at IS NULL AS superseded,
                  e.outcome,
                  CASE WHEN {_keeps_last_error("j.status")} THEN e.error_kind
                      ELSE j.last_error_kind END AS error_kind,
                  CASE WHEN {_keeps_last_error("j.status")} THEN e.error
                      ELSE j.last_error END AS error
    ),
    recorded AS (
        INSERT INTO job_attempts
            (job_id, number, owner, started_at, outcome, job_status, error_kind, error)
        SELECT x.id, x.claims, coalesce(x.lease_owner, 'unknown worker'),
               coalesce(x.attempt_started_at, now()), x.outcome, x.status, x.error_kind,
               x.error
        FROM ended AS x
        ON CONFLICT (job_id, number) DO NOTHING
    ),
    merged AS (
        UPDATE jobs AS f
        SET params = CASE
                WHEN x.params -> 'force_refresh' = 'true'::jsonb
                    THEN f.params || '{{"force_refresh": true}}'::jsonb
                ELSE f.params
            END,
            priority = least(f.priority, x.priority),
            max_attempts = f.attempts + greatest(f.max_attempts - f.attempts, x.attempts_left),
            available_at = least(f.available_at, now()),
            deferred = false,
            updated_at = now()
        FROM ended AS x
        WHERE x.superseded AND f.kind = x.kind AND f.brand_id = x.brand_id
          AND f.status = 'pending' AND f.id <> x.id
    )
    SELECT x.id, x.status FROM ended AS x
    """
    ).columns(tables.jobs.c.id, tables.jobs.c.status)


# The lease holder ends its own attempts, one row per (id, token) pair: complete (a batch
# at a time), fail/retry/snooze, cancel (as an operator asked), release at shutdown, give up.
END = _ending(
    """
        SELECT * FROM unnest(
            CAST(:ids AS uuid[]), CAST(:tokens AS uuid[]), CAST(:outcomes AS text[]),
            CAST(:errors AS text[]), CAST(:error_kinds AS text[]),
            CAST(:delays AS double precision[]), CAST(:terminal AS boolean[]),
            CAST(:evidence AS text[])
        ) AS e(id, token, outcome, error, error_kind, delay_seconds, terminal, evidence)
    """
)

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

# Reclaim expired leases in one set-based statement (the _ending template). Rows are locked
# with SKIP LOCKED, and the fenced UPDATE re-checks status, token and expiry on the locked
# row version, so a job that was completed or heartbeated after the scan began is left
# alone. A reap is an interruption: the attempt is refunded, and the job waits a backoff
# computed here (the worker's formula with its jitter floor: uniform over
# [floor * ceiling, ceiling], ceiling = least(cap, base * 2^(interruptions so far))), so a
# job that crashes its worker every time cannot loop hot; its :max_interruptions-th
# interruption fails it.
REAP = _ending(
    f"""
        SELECT j.id, j.lease_token AS token, 'reaped'::text AS outcome,
               'lease of ' || coalesce(j.lease_owner, 'unknown worker')
                   || ' expired during attempt ' || j.claims AS error,
               CAST(:error_kind AS text) AS error_kind,
               (CAST(:floor AS double precision)
                   + (1.0 - CAST(:floor AS double precision)) * random())
                 * least(
                     CAST(:cap_seconds AS double precision),
                     CAST(:base_seconds AS double precision)
                         * power(2.0, least(j.interruptions, {retry_rules.MAX_EXPONENT}))
                 ) AS delay_seconds,
               false AS terminal, NULL::text AS evidence
        FROM jobs AS j
        WHERE j.status = 'running' AND j.lease_expires_at < now()
        ORDER BY j.lease_expires_at
        LIMIT CAST(:limit AS integer)
        FOR UPDATE SKIP LOCKED
    """,
    recheck="AND j.lease_expires_at < now()",
)

# Hand back, at once and with the attempt refunded, every running row this worker owns but
# does not hold: a claim whose answer was lost (the connection dropped after the COMMIT, or
# the claim was cancelled) left them running with no task and no heartbeat, and they would
# otherwise wait for their lease to expire and the reaper. :held lists every token the
# process still holds or is still writing for (worker/tasks.py); the caller makes sure no
# claim is in flight meanwhile. Found by owner on ix_jobs_running_owner.
HAND_BACK = _ending(
    """
        SELECT j.id, j.lease_token AS token, 'handed_back'::text AS outcome,
               'handed back by ' || j.lease_owner || ': the claim''s answer never reached'
                   || ' it, so no handler ran' AS error,
               CAST(:error_kind AS text) AS error_kind,
               0.0::double precision AS delay_seconds, false AS terminal, NULL::text AS evidence
        FROM jobs AS j
        WHERE j.status = 'running' AND j.lease_owner = CAST(:owner AS text)
          AND NOT (j.lease_token = ANY(CAST(:held AS uuid[])))
        FOR UPDATE SKIP LOCKED
    """
)

# Make up to :limit deferred jobs ready once their backoff or snooze is over (walks
# ix_jobs_deferred up to now(), so it costs nothing while none is due), and announce them
# on the queue's channel, one NOTIFY per kind. available_at and updated_at stay as they
# are (the claim orders by available_at).
PROMOTE = sa.text(
    f"""
    WITH due AS (
        SELECT id FROM jobs
        WHERE status = 'pending' AND deferred AND available_at <= now()
        ORDER BY available_at
        LIMIT CAST(:limit AS integer)
        FOR UPDATE SKIP LOCKED
    ),
    promoted AS (
        UPDATE jobs AS j SET deferred = false
        WHERE j.id = ANY(ARRAY(SELECT id FROM due)) AND j.status = 'pending' AND j.deferred
        RETURNING j.kind
    ),
    notified AS (
        SELECT pg_notify('{CHANNEL}', k.kind) FROM (SELECT DISTINCT kind FROM promoted) AS k
    )
    SELECT (SELECT count(*) FROM promoted) AS promoted,
           (SELECT count(*) FROM notified) AS notified
    """
).columns(sa.column("promoted", sa.BigInteger), sa.column("notified", sa.BigInteger))

# An operator's cancel, in one statement that never waits behind a lease holder's page
# transactions: it changes no key column (lease_token stays), so it locks FOR NO KEY
# UPDATE, which the fence's FOR KEY SHARE does not block. A pending job is cancelled at
# once. A running job is only marked (cancel_requested_at): its lease holder stops at its
# next heartbeat and ends it cancelled (through _ending), or the reaper does if the holder
# is gone. A job already cancelled or marked matches nothing (the caller reads it back).
# The NOTIFY, delivered when the cancel commits, wakes the run ledger (db/ledger_queries.py),
# which aborts the job's runs at once: a run of a job whose cancel was requested is no
# longer followed by it.
CANCEL = _typed(
    f"""
    UPDATE jobs AS j
    SET status = CASE WHEN j.status = 'pending' THEN 'cancelled' ELSE j.status END,
        finished_at = CASE WHEN j.status = 'pending' THEN now() ELSE j.finished_at END,
        last_error_kind = CASE WHEN j.status = 'pending' THEN CAST(:error_kind AS text)
            ELSE j.last_error_kind END,
        cancel_requested_at = now(),
        updated_at = now()
    WHERE j.id = CAST(:id AS uuid) AND j.status IN ('pending', 'running')
      AND j.cancel_requested_at IS NULL
    RETURNING {_JOB},
        pg_notify('{ledger_queries.CHANNEL}', CAST(j.id AS text)) IS NULL AS ledger_woken
    """,
    JOB_COLUMNS,
)

# Operator retry of a failed or cancelled job: pending, ready now, attempts and both caps'
# counters reset (the attempt numbers go on). May violate uq_jobs_pending_per_brand when the
# brand already has a pending job of the kind (with a running one it becomes that job's
# follow-up).
RETRY_JOB = _typed(
    f"""
    UPDATE jobs AS j
    SET status = 'pending',
        available_at = now(),
        deferred = false,
        attempts = 0,
        interruptions = 0,
        snoozes = 0,
        cancel_requested_at = NULL,
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

# ---------------------------------------------------------------------------------------
# History and the worker registry

# The ended attempts of one job, oldest first (the running one is the job row itself).
ATTEMPTS = sa.text(
    """
    SELECT a.number, a.owner, a.started_at, a.ended_at, a.outcome, a.job_status,
           a.error_kind, a.error
    FROM job_attempts AS a
    WHERE a.job_id = CAST(:id AS uuid)
    ORDER BY a.number
    """
).columns(
    *(
        tables.job_attempts.c[name]
        for name in (
            "number",
            "owner",
            "started_at",
            "ended_at",
            "outcome",
            "job_status",
            "error_kind",
            "error",
        )
    )
)

# The Apify runs of one job, by the attempt that created them (ix_apify_runs_job_source).
RUNS_OF_JOB = sa.text(
    """
    SELECT r.job_attempt, r.id, r.apify_run_id, r.source_connection_id, r.actor_id, r.account,
           r.status, r.started_at, r.finished_at, r.usage_total_usd, r.error_kind,
           r.error_summary
    FROM apify_runs AS r
    WHERE r.job_id = CAST(:id AS uuid)
    ORDER BY r.created_at, r.id
    """
).columns(
    *(
        tables.apify_runs.c[name]
        for name in (
            "job_attempt",
            "id",
            "apify_run_id",
            "source_connection_id",
            "actor_id",
            "account",
            "status",
            "started_at",
            "finished_at",
            "usage_total_usd",
            "error_kind",
            "error_summary",
        )
    )
)

# A worker process says it has stopped (the last thing its lease keeper does).
STOP_WORKER = sa.text("UPDATE workers SET stopped_at = now() WHERE owner = CAST(:owner AS text)")

# Forget workers that stopped, or stopped beating, longer than :older_than_seconds ago.
FORGET_WORKERS = sa.text(
    """
    DELETE FROM workers
    WHERE coalesce(stopped_at, last_beat_at)
        < now() - make_interval(secs => CAST(:older_than_seconds AS double precision))
    """
)

# Every worker the registry knows, newest beat first, with the jobs each holds now and how
# many seconds ago it last beat (by the database clock).
LIST_WORKERS = sa.text(
    """
    SELECT w.owner, w.hostname, w.pid, w.version, w.concurrency, w.heartbeat_interval_seconds,
           w.started_at, w.last_beat_at, w.stopped_at,
           CAST(extract(epoch FROM now() - w.last_beat_at) AS double precision)
               AS seconds_since_beat,
           (SELECT count(*) FROM jobs AS j
            WHERE j.status = 'running' AND j.lease_owner = w.owner) AS held_jobs
    FROM workers AS w
    ORDER BY w.last_beat_at DESC, w.owner
    """
).columns(
    *(
        tables.workers.c[name]
        for name in (
            "owner",
            "hostname",
            "pid",
            "version",
            "concurrency",
            "heartbeat_interval_seconds",
            "started_at",
            "last_beat_at",
            "stopped_at",
        )
    ),
    sa.column("seconds_since_beat", sa.Float),
    sa.column("held_jobs", sa.BigInteger),
)

# The LISTEN connection's liveness probe (a plain string: it runs on a raw asyncpg
# connection, not through SQLAlchemy).
LISTENER_PING = "SELECT 1"
