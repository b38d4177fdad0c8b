"""Table definitions, shared by the code (SQLAlchemy Core) and by alembic autogenerate.

The migration in ``migrations/versions`` is written by hand to match; a test runs
autogenerate against the migrated schema and fails on any drift.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_NOW = sa.text("now()")
# Run statuses after which nothing more happens: Apify's four terminal ones and our own
# START_FAILED (an intent that provably never became a run). SQL text, for predicates.
RUN_ENDED_SQL = "('SUCCEEDED', 'FAILED', 'TIMED-OUT', 'ABORTED', 'START_FAILED')"
_LEGACY = sa.text("'-infinity'::timestamp with time zone")
_PARTITION = re.compile(r"raw_apify_items_(legacy|p\d{8})")
_UUID = sa.text("gen_random_uuid()")


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    ]


source_connections = sa.Table(
    "source_connections",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=_UUID),
    sa.Column("brand_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("platform", sa.Text(), nullable=False),
    sa.Column("capability", sa.Text(), nullable=False),
    sa.Column("identifier", sa.Text(), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("settings", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    *_timestamps(),
    # The Apify account whose token runs this source (0004); null: the implicit `default`.
    sa.Column(
        "account",
        sa.Text(),
        sa.ForeignKey("accounts.name", ondelete="RESTRICT", onupdate="CASCADE"),
        nullable=True,
    ),
    sa.UniqueConstraint("brand_id", "platform", "capability", "identifier"),
    # The console's filters (0007): runs by platform; brands by a word of a handle.
    sa.Index("ix_source_connections_platform", "platform"),
    sa.Index(
        "ix_source_connections_handle_words",
        sa.text("regexp_split_to_array(lower(identifier), '[^a-z0-9_]+'::text)"),
        postgresql_using="gin",
    ),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=_UUID),
    sa.Column("kind", sa.Text(), nullable=False, server_default="compile"),
    sa.Column("brand_id", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("status", sa.Text(), nullable=False, server_default="pending"),
    sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer(), nullable=False, server_default="10"),
    sa.Column("available_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("lease_owner", sa.Text(), nullable=True),
    sa.Column("lease_token", pg.UUID(as_uuid=True), nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("params", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("evidence_status", pg.JSONB(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_error_kind", sa.Text(), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    *_timestamps(),
    # Job history (0006): the attempts so far (every claim; numbers job_attempts), the
    # current attempt's start, attempts the infrastructure ended and "not now" ends (both
    # refunded, each with its own cap), a backoff's deferral, and an operator's cancel of
    # a running job that its holder has not acted on yet.
    sa.Column("claims", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("attempt_started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("interruptions", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("snoozes", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("deferred", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
    # The W3C traceparent the job was enqueued under (0009): its span continues that trace.
    sa.Column("traceparent", sa.Text(), nullable=True),
    sa.CheckConstraint(
        "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
    ),
    sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
    sa.CheckConstraint(
        "status <> 'running' OR (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)",
        name="running_has_lease",
    ),
    # No index may contain lease_expires_at or updated_at, the columns a heartbeat writes:
    # the heartbeat then stays a heap-only (HOT) update (0006; a test reads the catalog).
    # The claim scans only ready rows, in claim order; deferred rows (a backoff or snooze)
    # wait in their own index until the promoter makes them ready.
    sa.Index(
        "ix_jobs_claimable",
        "priority",
        "available_at",
        "id",
        postgresql_where=sa.text("status = 'pending' AND NOT deferred"),
    ),
    sa.Index(
        "ix_jobs_deferred",
        "available_at",
        postgresql_where=sa.text("status = 'pending' AND deferred"),
    ),
    # Running rows: the reaper filters them on expiry, a worker's hand-back finds its own.
    sa.Index(
        "ix_jobs_running_owner",
        "lease_owner",
        postgresql_where=sa.text("status = 'running'"),
    ),
    # One pending job of a kind per brand (enqueue coalesces into it) and one running
    # (never two at once; a follow-up waits while the brand's job runs).
    sa.Index(
        "uq_jobs_pending_per_brand",
        "kind",
        "brand_id",
        unique=True,
        postgresql_where=sa.text("status = 'pending' AND brand_id IS NOT NULL"),
    ),
    sa.Index(
        "uq_jobs_running_per_brand",
        "kind",
        "brand_id",
        unique=True,
        postgresql_where=sa.text("status = 'running' AND brand_id IS NOT NULL"),
    ),
    sa.Index("ix_jobs_brand_created", "brand_id", "created_at"),
    # The console's keyset pages, newest first, unfiltered or by status (migration 0003).
    sa.Index("ix_jobs_created_id", "created_at", "id"),
    sa.Index("ix_jobs_status_created_id", "status", "created_at", "id"),
    # The console's filters by error kind and by words in the error (migration 0007).
    sa.Index(
        "ix_jobs_error_kind_created_id",
        "last_error_kind",
        "created_at",
        "id",
        postgresql_where=sa.text("last_error_kind IS NOT NULL"),
    ),
    sa.Index(
        "ix_jobs_last_error_words",
        sa.text(
            "to_tsvector('simple'::regconfig, "
            "regexp_replace(last_error, '[^[:alnum:]_]+'::text, ' '::text, 'g'::text))"
        ),
        postgresql_using="gin",
        postgresql_where=sa.text("last_error IS NOT NULL"),
    ),
    # The lease token is a key (plain unique index), so changing it conflicts with the
    # fence's FOR KEY SHARE while a heartbeat does not (queue/sql.py explains).
    sa.Index("uq_jobs_lease_token", "lease_token", unique=True),
    # The console's stuck work: jobs with at most one attempt left (0009).
    sa.Index(
        "ix_jobs_last_attempt",
        "created_at",
        "id",
        postgresql_where=sa.text(
            "status IN ('pending', 'running') AND attempts >= max_attempts - 1"
        ),
    ),
    # Retention prunes finished rows by age.
    sa.Index(
        "ix_jobs_finished",
        "finished_at",
        postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"),
    ),
)

# One row per ended attempt of a job (0006), written by the statement that ends it. The
# running attempt is the job row itself (claims, lease_owner, attempt_started_at).
job_attempts = sa.Table(
    "job_attempts",
    metadata,
    sa.Column(
        "job_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("jobs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("number", sa.Integer(), primary_key=True),
    sa.Column("owner", sa.Text(), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("outcome", sa.Text(), nullable=False),
    sa.Column("job_status", sa.Text(), nullable=False),
    sa.Column("error_kind", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.CheckConstraint(
        "outcome IN ('succeeded', 'failed', 'snoozed', 'cancelled', 'released', 'given_up', "
        "'reaped', 'handed_back')",
        name="outcome",
    ),
    sa.CheckConstraint(
        "job_status IN ('pending', 'succeeded', 'failed', 'cancelled')", name="job_status"
    ),
)

# One row per worker process (0006), upserted by its heartbeat; the console's replicas.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("owner", sa.Text(), primary_key=True),
    sa.Column("hostname", sa.Text(), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("version", sa.Text(), nullable=False),
    sa.Column("concurrency", sa.Integer(), nullable=False),
    sa.Column("heartbeat_interval_seconds", sa.Float(), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("last_beat_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
)

apify_runs = sa.Table(
    "apify_runs",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=_UUID),
    sa.Column(
        "job_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("jobs.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column(
        "source_connection_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("source_connections.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("brand_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("actor_id", sa.Text(), nullable=False),
    sa.Column("input", pg.JSONB(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("apify_run_id", sa.Text(), nullable=True, unique=True),
    sa.Column("dataset_id", sa.Text(), nullable=True),
    sa.Column("status", sa.Text(), nullable=False, server_default="STARTING"),
    sa.Column("intent_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("item_cap", sa.Integer(), nullable=True),
    sa.Column("raw_item_count", sa.Integer(), nullable=True),
    sa.Column("raw_stored_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("normalized_item_count", sa.Integer(), nullable=True),
    sa.Column("normalized_created", sa.Integer(), nullable=True),
    sa.Column("normalized_updated", sa.Integer(), nullable=True),
    sa.Column("items_skipped", sa.Integer(), nullable=True),
    sa.Column("normalized_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("error_kind", sa.Text(), nullable=True),
    sa.Column("error_summary", sa.Text(), nullable=True),
    *_timestamps(),
    # Spend (0004): the account the run was started with, and what Apify says it cost.
    # NOT NULL since 0005: every request about a run uses the token of that account.
    sa.Column("account", sa.Text(), nullable=False, server_default=sa.text("'default'")),
    sa.Column("usage_total_usd", sa.Numeric(14, 6), nullable=True),
    sa.Column("usage", pg.JSONB(), nullable=True),
    # The run ledger (0005). When the last start request was sent (NULL: never sent).
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    # From the final run object: the charge limit and the events charged.
    sa.Column("max_total_charge_usd", sa.Numeric(14, 6), nullable=True),
    sa.Column("charged_event_counts", pg.JSONB(), nullable=True),
    # Why a kept dataset is partial (charge_cap, aborted, timed_out); who recorded the end.
    sa.Column("partial_reason", sa.Text(), nullable=True),
    sa.Column("ended_by", sa.Text(), nullable=True),
    # The ledger service: when to look next, when it was last claimed; the job stopped
    # following it; an abort was sent.
    sa.Column("ledger_check_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ledger_looked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("abort_requested_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint(
        "partial_reason IN ('charge_cap', 'aborted', 'timed_out')", name="partial_reason"
    ),
    sa.CheckConstraint("ended_by IN ('job', 'adoption', 'final_look', 'ledger')", name="ended_by"),
    # The time this run files its raw items under (0008): now() when the code records the
    # intent; '-infinity' for runs older than partitioning (and from older releases).
    sa.Column(
        "raw_partition_at", sa.DateTime(timezone=True), nullable=False, server_default=_LEGACY
    ),
    # The job attempt (jobs.claims, job_attempts.number) that created the intent (0006).
    sa.Column("job_attempt", sa.Integer(), nullable=True),
    # An operator asked the console to abort the run (0010): no job follows or wants it
    # any more, and the ledger aborts it with its own account's token.
    sa.Column("operator_abort_requested_at", sa.DateTime(timezone=True), nullable=True),
    # Freshness: the newest succeeded run per source.
    sa.Index(
        "ix_apify_runs_source_succeeded",
        "source_connection_id",
        sa.text("finished_at DESC"),
        postgresql_where=sa.text("status = 'SUCCEEDED'"),
    ),
    # Resume: the run of a (job, source).
    sa.Index("ix_apify_runs_job_source", "job_id", "source_connection_id"),
    # The console: keyset pages, each source's newest run, runs finished lately (0003).
    sa.Index("ix_apify_runs_created_id", "created_at", "id"),
    sa.Index("ix_apify_runs_status_created_id", "status", "created_at", "id"),
    sa.Index("ix_apify_runs_source_created", "source_connection_id", "created_at"),
    sa.Index(
        "ix_apify_runs_finished",
        "finished_at",
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    ),
    # Spend: today's cost per account (daily caps) and the `costs` report (0004).
    sa.Index("ix_apify_runs_account_finished", "account", "finished_at"),
    # The ledger's work list: only runs that have not ended (0005).
    sa.Index(
        "ix_apify_runs_unended",
        "ledger_check_at",
        postgresql_where=sa.text(f"status NOT IN {RUN_ENDED_SQL}"),
    ),
    # Reconciliation's exclusion set: runs already recorded for an actor in a window (0005).
    sa.Index(
        "ix_apify_runs_actor_started",
        "actor_id",
        "started_at",
        postgresql_where=sa.text("apify_run_id IS NOT NULL"),
    ),
    # The console's run filters by actor and account (0007).
    sa.Index("ix_apify_runs_actor_created_id", "actor_id", "created_at", "id"),
    sa.Index("ix_apify_runs_account_created_id", "account", "created_at", "id"),
)

# Every console action: who, from where, what, when (0007).
console_audit = sa.Table(
    "console_audit",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("actor", sa.Text(), nullable=False),
    sa.Column("via", sa.Text(), nullable=False),
    sa.Column("client", sa.Text(), nullable=True),
    sa.Column("action", sa.Text(), nullable=False),
    sa.Column("target", sa.Text(), nullable=False),
    sa.Column("selection", pg.JSONB(), nullable=False),
    sa.Column("matched", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("changed", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("unchanged", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("estimate_usd", sa.Numeric(14, 6), nullable=True),
    sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'running'")),
    sa.Column("error", sa.Text(), nullable=True),
    sa.CheckConstraint("state IN ('running', 'done', 'failed')", name="state"),
    sa.Index("ix_console_audit_created_id", "created_at", "id"),
)

# Partitioned by day on raw_partition_at, its run's value copied onto each item (0008;
# docs/raw-retention.md): the partitions are created and dropped by the worker's
# maintenance (db/raw_partitions.py) and are not part of this metadata. The value is the
# same for every item of a run, so the uniqueness below holds exactly when
# (apify_run_id, item_index) is unique.
raw_apify_items = sa.Table(
    "raw_apify_items",
    metadata,
    sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column(
        "apify_run_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("apify_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("item_index", sa.Integer(), nullable=False),
    sa.Column("raw_json", pg.JSONB(), nullable=False),
    sa.Column("skip_reason", sa.Text(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column(
        "raw_partition_at", sa.DateTime(timezone=True), nullable=False, server_default=_LEGACY
    ),
    sa.PrimaryKeyConstraint("id", "raw_partition_at"),
    sa.UniqueConstraint("apify_run_id", "item_index", "raw_partition_at"),
    postgresql_partition_by="RANGE (raw_partition_at)",
)

# One row: when the unpartitioned table became the legacy partition, and before which
# time runs' raw items have been dropped by retention (null: none yet). Reuse and
# renormalization read it; the maintenance that drops a partition moves it in the same
# transaction.
raw_item_retention = sa.Table(
    "raw_item_retention",
    metadata,
    sa.Column("id", sa.Boolean(), primary_key=True, server_default=sa.true()),
    sa.Column("converted_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Column("dropped_before", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.CheckConstraint("id", name="one_row"),
)


def is_partition(name: str | None) -> bool:
    """A raw-item partition (``raw_apify_items_legacy``, ``raw_apify_items_pYYYYMMDD``):
    schema comparisons leave them out, as they are made at run time."""
    return name is not None and _PARTITION.fullmatch(name) is not None


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """alembic's ``include_name`` hook: every table but the raw-item partitions."""
    return not (type_ == "table" and is_partition(name))


# ------------------------------------------------------------------ spend control (0004)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=_UUID),
    sa.Column("name", sa.Text(), nullable=False, unique=True),
    # Fernet ciphertext of the Apify token; never the token itself.
    sa.Column("token_ciphertext", sa.Text(), nullable=False),
    sa.Column("fingerprint", sa.Text(), nullable=False),
    sa.Column("max_concurrent_runs", sa.Integer(), nullable=True),
    sa.Column("max_memory_mbytes", sa.Integer(), nullable=True),
    sa.Column("daily_cap_usd", sa.Numeric(14, 6), nullable=True),
    *_timestamps(),
)

brand_caps = sa.Table(
    "brand_caps",
    metadata,
    sa.Column("brand_id", pg.UUID(as_uuid=True), primary_key=True),
    sa.Column("daily_cap_usd", sa.Numeric(14, 6), nullable=False),
    *_timestamps(),
)

run_slots = sa.Table(
    "run_slots",
    metadata,
    sa.Column(
        "run_id",
        pg.UUID(as_uuid=True),
        sa.ForeignKey("apify_runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("account", sa.Text(), nullable=False),
    sa.Column("brand_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("job_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("lease_token", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("memory_mbytes", sa.Integer(), nullable=False),
    sa.Column("granted", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    sa.Index("ix_run_slots_account", "account", "granted"),
)

normalized_evidence_items = sa.Table(
    "normalized_evidence_items",
    metadata,
    sa.Column("id", pg.UUID(as_uuid=True), primary_key=True, server_default=_UUID),
    sa.Column("brand_id", pg.UUID(as_uuid=True), nullable=False),
    sa.Column("platform", sa.Text(), nullable=False),
    sa.Column("content_type", sa.Text(), nullable=False),
    sa.Column("external_id", sa.Text(), nullable=True),
    sa.Column("canonical_url", sa.Text(), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("author_ref", sa.Text(), nullable=False, server_default=""),
    sa.Column("title", sa.Text(), nullable=True),
    sa.Column("text_primary", sa.Text(), nullable=False, server_default=""),
    sa.Column("text_secondary", sa.Text(), nullable=True),
    sa.Column("hashtags", pg.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("metrics", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("media", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("flags", pg.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("raw_refs", pg.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
    *_timestamps(),
    sa.CheckConstraint(
        "platform = 'web' OR external_id IS NOT NULL", name="non_web_has_external_id"
    ),
    sa.CheckConstraint("canonical_url <> ''", name="canonical_url_not_empty"),
    # The two uniqueness rules of original-system.md, enforced by the database.
    sa.Index(
        "uq_evidence_external_id",
        "brand_id",
        "platform",
        "content_type",
        "external_id",
        unique=True,
        postgresql_where=sa.text("platform <> 'web'"),
    ),
    sa.Index(
        "uq_evidence_canonical_url",
        "brand_id",
        "platform",
        "content_type",
        "canonical_url",
        unique=True,
        postgresql_where=sa.text("platform = 'web'"),
    ),
    sa.Index("ix_evidence_brand_published", "brand_id", "published_at"),
)
