"""The console's audit log, and an index behind each of its filters.

* ``console_audit``: one row per console action (retry, cancel, one job or many): who
  (the credential's identity and how it was shown), from where (the client address),
  what (the action, its selection, how many jobs matched and changed, the spend estimate
  shown), when (created, finished), and its state.
* Jobs by error kind (``ix_jobs_error_kind_created_id``) and by words in the error
  (``ix_jobs_last_error_words``, a full-text GIN index with the ``simple`` configuration
  over the error's runs of letters and digits: no extension needed, so the embedded
  PostgreSQL has it too, and markup in a scraped error cannot hide its words).
* Runs by actor (``ix_apify_runs_actor_created_id``) and account
  (``ix_apify_runs_account_created_id``); by source the existing
  ``ix_apify_runs_source_created`` serves, by platform the sources' new
  ``ix_source_connections_platform``.
* Brands by handle: ``ix_source_connections_handle_words``, a GIN index on the words of
  each source's identifier (``@acme`` and ``https://www.instagram.com/acme/`` both hold
  ``acme``).

Like 0003 these are plain ``CREATE INDEX`` statements in the migration's transaction: on
a large live database build them first by hand with ``CREATE INDEX CONCURRENTLY`` under
the same names, and ``IF NOT EXISTS`` makes this migration a no-op for them.

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

INDEXES = (
    (
        "ix_jobs_error_kind_created_id",
        "jobs (last_error_kind, created_at, id) WHERE last_error_kind IS NOT NULL",
    ),
    (
        "ix_jobs_last_error_words",
        "jobs USING gin (to_tsvector('simple'::regconfig, "
        "regexp_replace(last_error, '[^[:alnum:]_]+'::text, ' '::text, 'g'::text))) "
        "WHERE last_error IS NOT NULL",
    ),
    ("ix_apify_runs_actor_created_id", "apify_runs (actor_id, created_at, id)"),
    ("ix_apify_runs_account_created_id", "apify_runs (account, created_at, id)"),
    ("ix_source_connections_platform", "source_connections (platform)"),
    (
        "ix_source_connections_handle_words",
        "source_connections USING gin "
        "(regexp_split_to_array(lower(identifier), '[^a-z0-9_]+'::text))",
    ),
)


def upgrade() -> None:
    op.create_table(
        "console_audit",
        sa.Column("id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
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
        sa.PrimaryKeyConstraint("id", name="pk_console_audit"),
        sa.CheckConstraint("state IN ('running', 'done', 'failed')", name="ck_console_audit_state"),
    )
    op.create_index("ix_console_audit_created_id", "console_audit", ["created_at", "id"])
    for name, target in INDEXES:
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def downgrade() -> None:
    for name, _target in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_table("console_audit")
