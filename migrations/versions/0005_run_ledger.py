"""The run ledger: every Apify run we started is followed to its end, whatever its job does.

* ``apify_runs.sent_at``: when the (last) start request of an intent was sent, committed
  before the request goes out. NULL proves that no start was ever sent; reconciliation
  settles from it (``intent_at`` precedes the budget wait).
* The end of a run, recorded the same way on every path: ``max_total_charge_usd`` and
  ``charged_event_counts`` from the final run object, ``partial_reason`` (``charge_cap``,
  ``aborted``, ``timed_out``) for a run whose dataset was kept although it did not finish
  on its own, and ``ended_by`` (``job``, ``adoption``, ``final_look``, ``ledger``).
* The ledger service's bookkeeping: ``ledger_check_at`` (when it may look at the run
  next), ``ledger_looked_at`` (when a replica last claimed it), ``released_at`` (the job that started the run stopped following it before it
  ended) and ``abort_requested_at`` (we asked Apify to abort it).
* ``apify_runs.account`` becomes NOT NULL (``default`` for older rows): every request about
  a run must use the token of the account that started it.

Older rows are brought in line: terminal runs without ``finished_at`` get their last update
time (the freshness lookup skips runs without one), and ``sent_at`` is assumed for every
row that may have been sent (a STARTING intent then reconciles before it starts again).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ENDED = "('SUCCEEDED', 'FAILED', 'TIMED-OUT', 'ABORTED', 'START_FAILED')"


def upgrade() -> None:
    op.add_column("apify_runs", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("apify_runs", sa.Column("max_total_charge_usd", sa.Numeric(14, 6), nullable=True))
    op.add_column("apify_runs", sa.Column("charged_event_counts", pg.JSONB(), nullable=True))
    op.add_column("apify_runs", sa.Column("partial_reason", sa.Text(), nullable=True))
    op.add_column("apify_runs", sa.Column("ended_by", sa.Text(), nullable=True))
    op.add_column(
        "apify_runs", sa.Column("ledger_check_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "apify_runs", sa.Column("ledger_looked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("apify_runs", sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "apify_runs", sa.Column("abort_requested_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_check_constraint(
        "ck_apify_runs_partial_reason",
        "apify_runs",
        "partial_reason IN ('charge_cap', 'aborted', 'timed_out')",
    )
    op.create_check_constraint(
        "ck_apify_runs_ended_by",
        "apify_runs",
        "ended_by IN ('job', 'adoption', 'final_look', 'ledger')",
    )
    op.execute("UPDATE apify_runs SET account = 'default' WHERE account IS NULL")
    op.alter_column("apify_runs", "account", nullable=False, server_default=sa.text("'default'"))
    op.execute(
        f"UPDATE apify_runs SET finished_at = updated_at "
        f"WHERE finished_at IS NULL AND status IN {ENDED}"
    )
    op.execute(
        "UPDATE apify_runs SET sent_at = coalesce(started_at, intent_at) "
        "WHERE apify_run_id IS NOT NULL OR status = 'STARTING'"
    )
    # The ledger's work list: only runs that have not ended (a small index).
    op.create_index(
        "ix_apify_runs_unended",
        "apify_runs",
        ["ledger_check_at"],
        postgresql_where=sa.text(f"status NOT IN {ENDED}"),
    )
    # Reconciliation's exclusion set: the runs already recorded for an actor in a window.
    op.create_index(
        "ix_apify_runs_actor_started",
        "apify_runs",
        ["actor_id", "started_at"],
        postgresql_where=sa.text("apify_run_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_apify_runs_actor_started", table_name="apify_runs")
    op.drop_index("ix_apify_runs_unended", table_name="apify_runs")
    op.alter_column("apify_runs", "account", nullable=True, server_default=None)
    op.drop_constraint("ck_apify_runs_ended_by", "apify_runs", type_="check")
    op.drop_constraint("ck_apify_runs_partial_reason", "apify_runs", type_="check")
    for column in (
        "abort_requested_at",
        "released_at",
        "ledger_looked_at",
        "ledger_check_at",
        "ended_by",
        "partial_reason",
        "charged_event_counts",
        "max_total_charge_usd",
        "sent_at",
    ):
        op.drop_column("apify_runs", column)
