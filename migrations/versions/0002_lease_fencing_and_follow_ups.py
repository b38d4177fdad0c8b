"""Fence by key lock on the lease token; one pending and one running job per brand.

* ``uq_jobs_lease_token``: a plain (non-partial) unique index on ``jobs.lease_token``.
  PostgreSQL treats a column with such an index as a key: an UPDATE that changes
  ``lease_token`` (claim, reap, cancel, complete, fail, release) takes the row's
  ``FOR UPDATE`` lock, which conflicts with the pipeline fence's ``FOR KEY SHARE``,
  while the heartbeat (which never changes the token) takes ``FOR NO KEY UPDATE``,
  which does not. See ``kairo_ingest.queue.sql`` for the whole argument.
* ``uq_jobs_active_per_brand`` (one pending-or-running job per brand and kind) becomes
  ``uq_jobs_pending_per_brand`` and ``uq_jobs_running_per_brand``: enqueue coalesces
  only into a pending job, a follow-up may wait while the brand's job runs, and two
  running jobs of one brand stay impossible.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 18:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


_ACTIVE = "status IN ('pending', 'running') AND brand_id IS NOT NULL"
_PENDING = "status = 'pending' AND brand_id IS NOT NULL"
_RUNNING = "status = 'running' AND brand_id IS NOT NULL"


def upgrade() -> None:
    op.create_index("uq_jobs_lease_token", "jobs", ["lease_token"], unique=True)
    op.create_index(
        "uq_jobs_pending_per_brand",
        "jobs",
        ["kind", "brand_id"],
        unique=True,
        postgresql_where=sa.text(_PENDING),
    )
    op.create_index(
        "uq_jobs_running_per_brand",
        "jobs",
        ["kind", "brand_id"],
        unique=True,
        postgresql_where=sa.text(_RUNNING),
    )
    op.drop_index("uq_jobs_active_per_brand", table_name="jobs", postgresql_where=sa.text(_ACTIVE))


def downgrade() -> None:
    # Fails if a brand has a follow-up waiting while its job runs: finish or cancel it first.
    op.create_index(
        "uq_jobs_active_per_brand",
        "jobs",
        ["kind", "brand_id"],
        unique=True,
        postgresql_where=sa.text(_ACTIVE),
    )
    op.drop_index(
        "uq_jobs_running_per_brand", table_name="jobs", postgresql_where=sa.text(_RUNNING)
    )
    op.drop_index(
        "uq_jobs_pending_per_brand", table_name="jobs", postgresql_where=sa.text(_PENDING)
    )
    op.drop_index("uq_jobs_lease_token", table_name="jobs")
