"""Schema migrations: upgrade to head under an advisory lock, and "is it at head?".

The alembic scripts live in the top-level ``migrations/`` folder: the one the settings
name (``KAIRO_MIGRATIONS_DIR``, read and checked by :mod:`kairo_ingest.config`; the
container sets it), else the one next to the source tree (a checkout or an editable
install) or in the working directory. Callers pass the setting in as ``migrations``.
"""

from __future__ import annotations

import asyncio
import pathlib
import threading

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime import migration
from alembic.script import ScriptDirectory
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import engine as db_engine

# An arbitrary 64-bit key: "kairo-ingest migrate" is the only holder of this lock.
ADVISORY_LOCK_KEY = 0x6B6169726F6D6967

# alembic keeps module-level state while a command runs, so one process runs one at a time;
# replicas (separate processes) serialize on the advisory lock instead.
_ALEMBIC_LOCK = threading.Lock()


def migrations_dir(configured: pathlib.Path | None = None) -> pathlib.Path:
    """``configured`` when given, else the first ``migrations/`` folder found."""
    candidates = [configured] if configured is not None else []
    here = pathlib.Path(__file__).resolve()
    candidates += [parent / "migrations" for parent in here.parents]
    candidates.append(pathlib.Path.cwd() / "migrations")
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise errors.ConfigError(
        "cannot find the migrations folder; set KAIRO_MIGRATIONS_DIR",
        variable="KAIRO_MIGRATIONS_DIR",
    )


def alembic_config(url: str | None = None, *, migrations: pathlib.Path | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir(migrations)))
    if url is not None:
        # ConfigParser interpolation: a literal % must be doubled.
        cfg.set_main_option(
            "sqlalchemy.url",
            db_engine.asyncpg_url(url).render_as_string(hide_password=False).replace("%", "%%"),
        )
    return cfg


def head_revision(migrations: pathlib.Path | None = None) -> str:
    head = ScriptDirectory.from_config(alembic_config(migrations=migrations)).get_current_head()
    assert head is not None
    return head


async def upgrade(url: str, *, migrations: pathlib.Path | None = None) -> None:
    """Upgrade to head. Idempotent; concurrent callers serialize on the advisory lock."""
    cfg = alembic_config(url, migrations=migrations)

    def _upgrade() -> None:
        with _ALEMBIC_LOCK:
            command.upgrade(cfg, "head")

    # env.py runs its own event loop, so alembic runs in a worker thread.
    await asyncio.to_thread(_upgrade)


async def current_revision(engine: sa_async.AsyncEngine) -> str | None:
    async with engine.connect() as conn:

        def _read(sync_conn: sa.Connection) -> str | None:
            return migration.MigrationContext.configure(sync_conn).get_current_revision()

        return await conn.run_sync(_read)


async def check_at_head(
    engine: sa_async.AsyncEngine, *, migrations: pathlib.Path | None = None
) -> None:
    current = await current_revision(engine)
    head = head_revision(migrations)
    if current != head:
        raise errors.SchemaNotAtHeadError(
            f"database schema is at {current or 'nothing'}, code expects {head}: "
            "run `kairo-ingest migrate`"
        )
