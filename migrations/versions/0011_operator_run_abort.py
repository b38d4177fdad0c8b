"""An operator's abort of Apify runs from the console.

* ``apify_runs.operator_abort_requested_at``: set by the console's "abort runs" action.
  From then on no job follows the run and no job wants it (``db/ledger.py``): the ledger
  service aborts it on Apify with the token of the account that started it, and records
  its end and cost, as it does for the run of a cancelled job. Nullable, no default: no
  table rewrite. The runs the action picks are found through ``ix_apify_runs_unended``
  (runs that have not ended), so it needs no index of its own.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 18:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "apify_runs",
        sa.Column("operator_abort_requested_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("apify_runs", "operator_abort_requested_at")
