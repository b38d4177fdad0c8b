"""Indexes for the operator console: keyset pages and time windows on jobs and apify_runs.

The console lists jobs and runs newest first, one page at a time, by the key
``(created_at, id)``; filtered by status it needs the status in front. Its charts read
the last hours by ``created_at`` and ``finished_at``, and the brands page reads each
source's newest run.

These are plain ``CREATE INDEX`` statements inside the migration's transaction, so they
block writes to the table while they build (seconds on a million rows). On a large live
database, build them first by hand with ``CREATE INDEX CONCURRENTLY`` under the same
names; ``IF NOT EXISTS`` then makes this migration a no-op.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 18:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_jobs_created_id", "jobs", "created_at, id"),
    ("ix_jobs_status_created_id", "jobs", "status, created_at, id"),
    ("ix_apify_runs_created_id", "apify_runs", "created_at, id"),
    ("ix_apify_runs_status_created_id", "apify_runs", "status, created_at, id"),
    ("ix_apify_runs_source_created", "apify_runs", "source_connection_id, created_at"),
)
FINISHED_RUNS = (
    "ix_apify_runs_finished",
    "apify_runs",
    "finished_at",
    "finished_at IS NOT NULL",
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")
    name, table, columns, where = FINISHED_RUNS
    op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns}) WHERE {where}")


def downgrade() -> None:
    for name, _table, _columns in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute(f"DROP INDEX IF EXISTS {FINISHED_RUNS[0]}")
