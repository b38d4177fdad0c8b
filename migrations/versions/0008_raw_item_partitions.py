"""Raw items partitioned by day, converted in place without a long lock.

``raw_apify_items`` becomes a table partitioned by range on ``raw_partition_at``: the
time its *run* files its raw items under, copied onto every item of the run. Because the
value is the same for every item of a run, ``(apify_run_id, item_index,
raw_partition_at)`` is unique exactly when ``(apify_run_id, item_index)`` is, so the
contract's uniqueness and the ``ON CONFLICT`` inserts keep their meaning (a partitioned
table's unique constraints must hold its partition key). ``apify_runs.raw_partition_at``
holds the run's value: the code sets it to ``now()`` when it records a run's intent.

Rows that exist before this migration keep ``'-infinity'`` (a constant default, which
PostgreSQL stores once in the catalog instead of rewriting the table), and so does
anything an older release writes while it still runs next to this one: runs and items
written without the column agree on it. The old table is not copied; it *becomes* a
partition, ``raw_apify_items_legacy`` (``MINVALUE`` to 2000-01-01), next to daily
partitions from today on. ``raw_item_retention`` (one row) records when the conversion
happened, for dropping the legacy partition in its turn, and up to when raw items have
been dropped (``dropped_before``), which reuse and renormalization check.

Three steps, so that no lock is held during a scan or an index build:

1. (transaction) lock both tables (raw items first, as page transactions do), add the
   columns with constant defaults, a ``NOT VALID`` check that the old rows sit below the
   legacy bound, and the ``raw_item_retention`` row: catalog only.
2. (autocommit) ``VALIDATE CONSTRAINT`` scans the table under ``SHARE UPDATE EXCLUSIVE``,
   which lets reads and writes go on; ``CREATE UNIQUE INDEX CONCURRENTLY`` builds the
   two indexes the partitioned parent needs on it (primary key and uniqueness, each with
   the partition key).
3. (transaction) swap the constraints onto those indexes, rename the table to
   ``raw_apify_items_legacy``, create the partitioned ``raw_apify_items``, and attach
   the old table as a partition. With a valid check implying the partition bound and
   matching indexes and foreign key, the attach scans nothing and builds nothing.

``kairo-ingest migrate`` holds a session-level advisory lock across the commits of step
2 (``migrations/env.py``), so replicas that migrate at once still run it once. Each step
is safe to run again after a crash. The downgrade copies every row back into one table
(it holds its locks for the copy).

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import context, op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Below every time the code files a run under (it writes now()), above '-infinity'.
LEGACY_UNTIL = "2000-01-01 00:00:00+00"
DAYS_AHEAD = 7
LEGACY = "raw_apify_items_legacy"
LEGACY_CHECK = "ck_raw_apify_items_legacy_bound"
LEGACY_PKEY = "pk_raw_apify_items_legacy"
LEGACY_UNIQUE = "uq_raw_apify_items_legacy_run_index"
LOCK_TIMEOUT = "10s"


def _partitioned(bind: sa.Connection) -> bool:
    kind = bind.scalar(
        sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass('raw_apify_items')")
    )
    return kind == "p"


def _lock() -> None:
    """The two tables, in the order page transactions take them (a raw item's insert, then
    its foreign key's check on the run): the other order deadlocks with them. A lock that
    is not granted within LOCK_TIMEOUT fails the migration rather than queueing every
    reader and writer behind it; run it again."""
    op.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    op.execute("LOCK TABLE raw_apify_items, apify_runs IN ACCESS EXCLUSIVE MODE")


def _prepare() -> None:
    """Step 1: catalog-only changes, in the migration's transaction."""
    _lock()
    for table in ("apify_runs", "raw_apify_items"):
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS raw_partition_at"
            " timestamp with time zone NOT NULL DEFAULT '-infinity'"
        )
    op.execute(
        f"""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '{LEGACY_CHECK}') THEN
                ALTER TABLE raw_apify_items ADD CONSTRAINT {LEGACY_CHECK}
                    CHECK (raw_partition_at < '{LEGACY_UNTIL}') NOT VALID;
            END IF;
        END $$
        """
    )
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS raw_item_retention (
            id boolean DEFAULT true NOT NULL,
            converted_at timestamp with time zone DEFAULT now() NOT NULL,
            dropped_before timestamp with time zone,
            updated_at timestamp with time zone DEFAULT now() NOT NULL,
            CONSTRAINT pk_raw_item_retention PRIMARY KEY (id),
            CONSTRAINT ck_raw_item_retention_one_row CHECK (id)
        )
        """
    )
    op.execute("INSERT INTO raw_item_retention DEFAULT VALUES ON CONFLICT (id) DO NOTHING")
    op.execute("SET LOCAL lock_timeout = DEFAULT")


def _build_legacy_indexes(bind: sa.Connection) -> None:
    """Step 2: the scan and the index builds, outside any transaction."""
    bind.execute(sa.text(f"ALTER TABLE raw_apify_items VALIDATE CONSTRAINT {LEGACY_CHECK}"))
    for name, columns in (
        (LEGACY_PKEY, "id, raw_partition_at"),
        (LEGACY_UNIQUE, "apify_run_id, item_index, raw_partition_at"),
    ):
        valid = bind.scalar(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": name},
        )
        if valid is False:  # a build interrupted by a crash leaves an invalid index
            bind.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        bind.execute(
            sa.text(
                f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name}"
                f" ON raw_apify_items ({columns})"
            )
        )


def _daily_partitions(bind: sa.Connection) -> None:
    today = bind.scalar(sa.text("SELECT (now() AT TIME ZONE 'UTC')::date"))
    assert isinstance(today, dt.date)
    for offset in range(DAYS_AHEAD + 1):
        day = today + dt.timedelta(days=offset)
        op.execute(
            f"CREATE TABLE IF NOT EXISTS raw_apify_items_p{day:%Y%m%d}"
            f" PARTITION OF raw_apify_items FOR VALUES"
            f" FROM ('{day.isoformat()} 00:00:00+00')"
            f" TO ('{(day + dt.timedelta(days=1)).isoformat()} 00:00:00+00')"
        )


def _convert(bind: sa.Connection) -> None:
    """Step 3: constraints onto the new indexes, the swap and the attach: catalog only."""
    _lock()
    next_id = bind.scalar(
        sa.text(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END"
            " FROM raw_apify_items_id_seq"
        )
    )
    op.execute("ALTER TABLE raw_apify_items ALTER COLUMN id DROP IDENTITY")
    op.execute("ALTER TABLE raw_apify_items DROP CONSTRAINT pk_raw_apify_items")
    op.execute(
        f"ALTER TABLE raw_apify_items ADD CONSTRAINT {LEGACY_PKEY}"
        f" PRIMARY KEY USING INDEX {LEGACY_PKEY}"
    )
    op.execute(
        "ALTER TABLE raw_apify_items DROP CONSTRAINT uq_raw_apify_items_apify_run_id_item_index"
    )
    op.execute(
        f"ALTER TABLE raw_apify_items ADD CONSTRAINT {LEGACY_UNIQUE} UNIQUE USING INDEX {LEGACY_UNIQUE}"
    )
    op.execute(
        "ALTER TABLE raw_apify_items RENAME CONSTRAINT fk_raw_apify_items_apify_run_id_apify_runs"
        " TO fk_raw_apify_items_legacy_apify_run_id_apify_runs"
    )
    op.execute(f"ALTER TABLE raw_apify_items RENAME TO {LEGACY}")
    op.execute(
        """
        CREATE TABLE raw_apify_items (
            id bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
            apify_run_id uuid NOT NULL,
            item_index integer NOT NULL,
            raw_json jsonb NOT NULL,
            skip_reason text,
            created_at timestamp with time zone DEFAULT now() NOT NULL,
            raw_partition_at timestamp with time zone DEFAULT '-infinity' NOT NULL,
            CONSTRAINT pk_raw_apify_items PRIMARY KEY (id, raw_partition_at),
            CONSTRAINT uq_raw_apify_items_apify_run_id_item_index_raw_partition_at
                UNIQUE (apify_run_id, item_index, raw_partition_at),
            CONSTRAINT fk_raw_apify_items_apify_run_id_apify_runs FOREIGN KEY (apify_run_id)
                REFERENCES apify_runs (id) ON DELETE CASCADE
        ) PARTITION BY RANGE (raw_partition_at)
        """
    )
    # Ids go on from where the old table's identity stopped (evidence's raw_refs name them).
    op.execute(f"ALTER TABLE raw_apify_items ALTER COLUMN id RESTART WITH {int(next_id)}")
    op.execute(
        f"ALTER TABLE raw_apify_items ATTACH PARTITION {LEGACY}"
        f" FOR VALUES FROM (MINVALUE) TO ('{LEGACY_UNTIL}')"
    )
    _daily_partitions(bind)
    op.execute("SET LOCAL lock_timeout = DEFAULT")


def upgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError("0008 converts a live table in steps: run it online (migrate)")
    if _partitioned(op.get_bind()):
        return
    _prepare()
    with op.get_context().autocommit_block():
        _build_legacy_indexes(op.get_bind())
    _convert(op.get_bind())


def downgrade() -> None:
    # One table again, every row copied (under the locks of one transaction).
    op.execute("ALTER TABLE raw_apify_items RENAME TO raw_apify_items_partitioned")
    op.execute(
        "ALTER TABLE raw_apify_items_partitioned"
        " RENAME CONSTRAINT pk_raw_apify_items TO pk_raw_apify_items_partitioned"
    )
    op.execute(
        "ALTER TABLE raw_apify_items_partitioned RENAME CONSTRAINT"
        " fk_raw_apify_items_apify_run_id_apify_runs TO fk_raw_apify_items_partitioned_run"
    )
    op.execute(
        """
        CREATE TABLE raw_apify_items (
            id bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,
            apify_run_id uuid NOT NULL,
            item_index integer NOT NULL,
            raw_json jsonb NOT NULL,
            skip_reason text,
            created_at timestamp with time zone DEFAULT now() NOT NULL,
            CONSTRAINT pk_raw_apify_items PRIMARY KEY (id),
            CONSTRAINT uq_raw_apify_items_apify_run_id_item_index UNIQUE (apify_run_id, item_index),
            CONSTRAINT fk_raw_apify_items_apify_run_id_apify_runs FOREIGN KEY (apify_run_id)
                REFERENCES apify_runs (id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "INSERT INTO raw_apify_items"
        " (id, apify_run_id, item_index, raw_json, skip_reason, created_at)"
        " SELECT id, apify_run_id, item_index, raw_json, skip_reason, created_at"
        " FROM raw_apify_items_partitioned"
    )
    op.execute(
        "SELECT setval(pg_get_serial_sequence('raw_apify_items', 'id'),"
        " (SELECT coalesce(max(id), 0) + 1 FROM raw_apify_items), false)"
    )
    op.execute("DROP TABLE raw_apify_items_partitioned")  # and its partitions
    op.execute("DROP TABLE raw_item_retention")
    op.execute("ALTER TABLE apify_runs DROP COLUMN raw_partition_at")
