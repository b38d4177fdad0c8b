"""Job history and a queue that stays cheap: attempts, counters, deferral, cancel flag, workers.

* ``job_attempts``: one row per ended attempt of a job (its number, the owner that ran
  it, when it started and ended, how it ended, the job's status after it, the error).
  Deleted with its job (``ON DELETE CASCADE``), so it follows the jobs' retention.
* ``jobs.claims`` numbers the attempts (every claim counts, refunded or not);
  ``attempt_started_at`` is the current attempt's start. ``interruptions`` counts the
  attempts the infrastructure ended (reaped, given up, released at shutdown) and
  ``snoozes`` the "not now" ends: both are refunded, and each has its own cap.
* ``jobs.cancel_requested_at``: an operator's cancel of a running job sets it and
  returns; the lease holder stops at its next heartbeat and ends the job ``cancelled``.
* ``jobs.deferred``: a pending job that waits on a backoff or snooze. Deferred rows
  are out of ``ix_jobs_claimable`` (so a claim never walks them) and in
  ``ix_jobs_deferred``, from which a maintenance loop promotes them when they are due.
* Heartbeats become heap-only updates: ``ix_jobs_lease_expiry`` is dropped (no index may
  contain ``lease_expires_at`` or ``updated_at``, the two columns a heartbeat writes);
  the reaper walks ``ix_jobs_running_owner`` (running rows only) and filters on expiry,
  and the hand-back of a worker's orphaned rows finds them by owner in the same index.
* ``jobs.max_attempts`` defaults to 10 (see docs/queue.md, Retries).
* ``apify_runs.job_attempt``: the job attempt (``jobs.claims`` at the time) that
  created the run intent.
* ``workers``: one row per worker process, upserted by its heartbeat.

The new columns have constant defaults (no table rewrite); only pending and running rows
are updated. The three partial indexes are built inside the migration's transaction,
which blocks writes to ``jobs`` while each builds (a scan of the table). Workers of the
release before keep working against this schema during a rolling deploy: they ignore
the new columns, their retries are not marked deferred (and so are claimed as before,
once due), and their attempts are not recorded.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_NOW = sa.text("now()")
_PENDING = "status = 'pending'"
_READY = "status = 'pending' AND NOT deferred"
_DEFERRED = "status = 'pending' AND deferred"
_RUNNING = "status = 'running'"
_OUTCOMES = (
    "'succeeded', 'failed', 'snoozed', 'cancelled', 'released', 'given_up', 'reaped', 'handed_back'"
)
_JOB_STATUSES = "'pending', 'succeeded', 'failed', 'cancelled'"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "jobs", sa.Column("attempt_started_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "jobs", sa.Column("interruptions", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("jobs", sa.Column("snoozes", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "jobs", sa.Column("deferred", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "jobs", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.alter_column("jobs", "max_attempts", server_default="10")
    # Active jobs only (finished rows are not rewritten): every attempt spent was claimed
    # at least once, so numbering goes on from there.
    op.execute(
        "UPDATE jobs SET claims = attempts, attempt_started_at = started_at "
        "WHERE status IN ('pending', 'running')"
    )
    op.execute(f"UPDATE jobs SET deferred = true WHERE {_PENDING} AND available_at > now()")

    op.drop_index("ix_jobs_lease_expiry", table_name="jobs", postgresql_where=sa.text(_RUNNING))
    op.drop_index("ix_jobs_claimable", table_name="jobs", postgresql_where=sa.text(_PENDING))
    op.create_index(
        "ix_jobs_claimable",
        "jobs",
        ["priority", "available_at", "id"],
        postgresql_where=sa.text(_READY),
    )
    op.create_index(
        "ix_jobs_deferred", "jobs", ["available_at"], postgresql_where=sa.text(_DEFERRED)
    )
    op.create_index(
        "ix_jobs_running_owner", "jobs", ["lease_owner"], postgresql_where=sa.text(_RUNNING)
    )

    op.create_table(
        "job_attempts",
        sa.Column("job_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("job_status", sa.Text(), nullable=False),
        sa.Column("error_kind", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(f"outcome IN ({_OUTCOMES})", name="ck_job_attempts_outcome"),
        sa.CheckConstraint(f"job_status IN ({_JOB_STATUSES})", name="ck_job_attempts_job_status"),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_job_attempts_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "number", name="pk_job_attempts"),
    )
    op.add_column("apify_runs", sa.Column("job_attempt", sa.Integer(), nullable=True))

    op.create_table(
        "workers",
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("hostname", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("heartbeat_interval_seconds", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("last_beat_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("owner", name="pk_workers"),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_column("apify_runs", "job_attempt")
    op.drop_table("job_attempts")
    op.drop_index("ix_jobs_running_owner", table_name="jobs", postgresql_where=sa.text(_RUNNING))
    op.drop_index("ix_jobs_deferred", table_name="jobs", postgresql_where=sa.text(_DEFERRED))
    op.drop_index("ix_jobs_claimable", table_name="jobs", postgresql_where=sa.text(_READY))
    op.create_index(
        "ix_jobs_claimable",
        "jobs",
        ["priority", "available_at", "id"],
        postgresql_where=sa.text(_PENDING),
    )
    op.create_index(
        "ix_jobs_lease_expiry", "jobs", ["lease_expires_at"], postgresql_where=sa.text(_RUNNING)
    )
    op.alter_column("jobs", "max_attempts", server_default="3")
    for column in (
        "cancel_requested_at",
        "deferred",
        "snoozes",
        "interruptions",
        "attempt_started_at",
        "claims",
    ):
        op.drop_column("jobs", column)
