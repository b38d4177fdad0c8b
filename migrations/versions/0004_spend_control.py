"""Spend control: accounts with encrypted tokens, run cost, one run budget per account.

* ``accounts``: an Apify token per tenant (Fernet ciphertext and an HMAC fingerprint,
  never the token), with its limits and daily cap; ``source_connections.account`` names
  the account of a source (null: the implicit ``default`` account from the settings).
* ``apify_runs.account``, ``usage_total_usd``, ``usage``: who paid, and what Apify
  reported in the final run object.
* ``brand_caps``: a brand's own daily cap, overriding its accounts' caps for its runs.
* ``run_slots``: the shared concurrency and memory budget. A row per run intent that
  waits (``granted`` false) or holds a slot (true); it counts only while its job still
  holds the same lease token, so a killed replica cannot leak slots.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_NOW = sa.text("now()")


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    ]


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column(
            "id",
            pg.UUID(as_uuid=True),
            primary_key=True,
            server_default=sa.text("gen_random_uuid()"),
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_ciphertext", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("max_concurrent_runs", sa.Integer(), nullable=True),
        sa.Column("max_memory_mbytes", sa.Integer(), nullable=True),
        sa.Column("daily_cap_usd", sa.Numeric(14, 6), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.UniqueConstraint("name", name="uq_accounts_name"),
    )
    op.add_column("source_connections", sa.Column("account", sa.Text(), nullable=True))
    op.create_foreign_key(
        "fk_source_connections_account_accounts",
        "source_connections",
        "accounts",
        ["account"],
        ["name"],
        ondelete="RESTRICT",
        onupdate="CASCADE",
    )
    op.add_column("apify_runs", sa.Column("account", sa.Text(), nullable=True))
    op.add_column("apify_runs", sa.Column("usage_total_usd", sa.Numeric(14, 6), nullable=True))
    op.add_column("apify_runs", sa.Column("usage", pg.JSONB(), nullable=True))
    op.create_index("ix_apify_runs_account_finished", "apify_runs", ["account", "finished_at"])
    op.create_table(
        "brand_caps",
        sa.Column("brand_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("daily_cap_usd", sa.Numeric(14, 6), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("brand_id", name="pk_brand_caps"),
    )
    op.create_table(
        "run_slots",
        sa.Column("run_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("brand_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("job_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("lease_token", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("memory_mbytes", sa.Integer(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.PrimaryKeyConstraint("run_id", name="pk_run_slots"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["apify_runs.id"],
            name="fk_run_slots_run_id_apify_runs",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_run_slots_account", "run_slots", ["account", "granted"])


def downgrade() -> None:
    op.drop_table("run_slots")
    op.drop_table("brand_caps")
    op.drop_index("ix_apify_runs_account_finished", table_name="apify_runs")
    op.drop_column("apify_runs", "usage")
    op.drop_column("apify_runs", "usage_total_usd")
    op.drop_column("apify_runs", "account")
    op.drop_constraint(
        "fk_source_connections_account_accounts", "source_connections", type_="foreignkey"
    )
    op.drop_column("source_connections", "account")
    op.drop_table("accounts")
