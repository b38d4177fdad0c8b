"""Initial schema: sources, the job queue, Apify runs, raw items and evidence items.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 12:00:59.061654
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("kind", sa.Text(), server_default="compile", nullable=False),
        sa.Column("brand_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), server_default="3", nullable=False),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.UUID(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("evidence_status", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_kind", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status <> 'running' OR (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name=op.f("ck_jobs_running_has_lease"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name=op.f("ck_jobs_attempts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    # jobs is the hot table: every claim, heartbeat and completion rewrites a row.
    # fillfactor 70 leaves room on each page so those updates stay HOT (heap-only,
    # no index write), and the aggressive autovacuum thresholds clean dead tuples
    # after ~2% churn instead of the default 20%, so the claim index stays small.
    op.execute(
        "ALTER TABLE jobs SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, "
        "autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0)"
    )
    op.create_index("ix_jobs_brand_created", "jobs", ["brand_id", "created_at"], unique=False)
    op.create_index(
        "ix_jobs_claimable",
        "jobs",
        ["priority", "available_at", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_jobs_finished",
        "jobs",
        ["finished_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"),
    )
    op.create_index(
        "ix_jobs_lease_expiry",
        "jobs",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "uq_jobs_active_per_brand",
        "jobs",
        ["kind", "brand_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'running') AND brand_id IS NOT NULL"),
    )
    op.create_table(
        "normalized_evidence_items",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("brand_id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("canonical_url", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("author_ref", sa.Text(), server_default="", nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("text_primary", sa.Text(), server_default="", nullable=False),
        sa.Column("text_secondary", sa.Text(), nullable=True),
        sa.Column(
            "hashtags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "media",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "flags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "raw_refs",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "canonical_url <> ''", name=op.f("ck_normalized_evidence_items_canonical_url_not_empty")
        ),
        sa.CheckConstraint(
            "platform = 'web' OR external_id IS NOT NULL",
            name=op.f("ck_normalized_evidence_items_non_web_has_external_id"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_normalized_evidence_items")),
    )
    op.create_index(
        "ix_evidence_brand_published",
        "normalized_evidence_items",
        ["brand_id", "published_at"],
        unique=False,
    )
    op.create_index(
        "uq_evidence_canonical_url",
        "normalized_evidence_items",
        ["brand_id", "platform", "content_type", "canonical_url"],
        unique=True,
        postgresql_where=sa.text("platform = 'web'"),
    )
    op.create_index(
        "uq_evidence_external_id",
        "normalized_evidence_items",
        ["brand_id", "platform", "content_type", "external_id"],
        unique=True,
        postgresql_where=sa.text("platform <> 'web'"),
    )
    op.create_table(
        "source_connections",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("brand_id", sa.UUID(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("capability", sa.Text(), nullable=False),
        sa.Column("identifier", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_connections")),
        sa.UniqueConstraint(
            "brand_id",
            "platform",
            "capability",
            "identifier",
            name=op.f("uq_source_connections_brand_id_platform_capability_identifier"),
        ),
    )
    op.create_table(
        "apify_runs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("source_connection_id", sa.UUID(), nullable=False),
        sa.Column("brand_id", sa.UUID(), nullable=False),
        sa.Column("actor_id", sa.Text(), nullable=False),
        sa.Column("input", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("apify_run_id", sa.Text(), nullable=True),
        sa.Column("dataset_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default="STARTING", nullable=False),
        sa.Column(
            "intent_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
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
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_apify_runs_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["source_connection_id"],
            ["source_connections.id"],
            name=op.f("fk_apify_runs_source_connection_id_source_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_apify_runs")),
        sa.UniqueConstraint("apify_run_id", name=op.f("uq_apify_runs_apify_run_id")),
    )
    op.create_index(
        "ix_apify_runs_job_source", "apify_runs", ["job_id", "source_connection_id"], unique=False
    )
    op.create_index(
        "ix_apify_runs_source_succeeded",
        "apify_runs",
        ["source_connection_id", sa.literal_column("finished_at DESC")],
        unique=False,
        postgresql_where=sa.text("status = 'SUCCEEDED'"),
    )
    op.create_table(
        "raw_apify_items",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("apify_run_id", sa.UUID(), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("raw_json", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["apify_run_id"],
            ["apify_runs.id"],
            name=op.f("fk_raw_apify_items_apify_run_id_apify_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_apify_items")),
        sa.UniqueConstraint(
            "apify_run_id", "item_index", name=op.f("uq_raw_apify_items_apify_run_id_item_index")
        ),
    )


def downgrade() -> None:
    op.drop_table("raw_apify_items")
    op.drop_index(
        "ix_apify_runs_source_succeeded",
        table_name="apify_runs",
        postgresql_where=sa.text("status = 'SUCCEEDED'"),
    )
    op.drop_index("ix_apify_runs_job_source", table_name="apify_runs")
    op.drop_table("apify_runs")
    op.drop_table("source_connections")
    op.drop_index(
        "uq_evidence_external_id",
        table_name="normalized_evidence_items",
        postgresql_where=sa.text("platform <> 'web'"),
    )
    op.drop_index(
        "uq_evidence_canonical_url",
        table_name="normalized_evidence_items",
        postgresql_where=sa.text("platform = 'web'"),
    )
    op.drop_index("ix_evidence_brand_published", table_name="normalized_evidence_items")
    op.drop_table("normalized_evidence_items")
    op.drop_index(
        "uq_jobs_active_per_brand",
        table_name="jobs",
        postgresql_where=sa.text("status IN ('pending', 'running') AND brand_id IS NOT NULL"),
    )
    op.drop_index(
        "ix_jobs_lease_expiry", table_name="jobs", postgresql_where=sa.text("status = 'running'")
    )
    op.drop_index(
        "ix_jobs_finished",
        table_name="jobs",
        postgresql_where=sa.text("status IN ('succeeded', 'failed', 'cancelled')"),
    )
    op.drop_index(
        "ix_jobs_claimable", table_name="jobs", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_index("ix_jobs_brand_created", table_name="jobs")
    op.drop_table("jobs")
