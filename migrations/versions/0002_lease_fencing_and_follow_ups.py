"""Fence by key lock on the lease token; one pending and one running job per brand.

* ``uq_jobs_lease_token``: a plain (non-partial) unique index on ``jobs.lease_token``.
  PostgreSQL treats a column with such an index as a key: an UPDATE that changes
  ``lease_token`` (claim, reap, cancel, complete, fail, release) takes the row's
  ``FOR UPDATE`` lock, which conflicts with the pipeline fence's ``FOR KEY SHARE``,
  while the heartbeat (which never changes the token) takes ``FOR NO KEY UPDATE``,
  which does not. See ``kairo_ingest.queue.sql`` for the whole argument.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 18:45:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_jobs_lease_token", "jobs", ["lease_token"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_jobs_lease_token", table_name="jobs")
