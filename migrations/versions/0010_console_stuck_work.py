"""The console's stuck work: jobs on their last attempt, found by an index.

* ``ix_jobs_last_attempt``: pending and running jobs with at most one attempt left
  (``attempts >= max_attempts - 1``), by ``(created_at, id)``. A partial index: finished
  jobs and jobs with attempts to spare are not in it, so it stays small however long the
  backlog is. It holds no column a heartbeat writes (``lease_expires_at``,
  ``updated_at``), so heartbeats stay heap-only updates.

A plain ``CREATE INDEX`` in the migration's transaction, as 0003 and 0007: on a large live
database build it first by hand with ``CREATE INDEX CONCURRENTLY`` under the same name,
and ``IF NOT EXISTS`` makes this migration a no-op for it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_jobs_last_attempt ON jobs (created_at, id) "
        "WHERE status IN ('pending', 'running') AND attempts >= max_attempts - 1"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_jobs_last_attempt")
