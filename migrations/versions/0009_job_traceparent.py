"""The W3C trace context a job was enqueued under.

``jobs.traceparent``: the ``traceparent`` header value (``00-<trace id>-<span id>-<flags>``)
the caller of ``enqueue`` passed, or null. The job's span continues that trace. A nullable
column with no default: adding it only updates the catalog, whatever the table's size.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("traceparent", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "traceparent")
