from __future__ import annotations

import asyncio
import sys
import uuid

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate, tables


async def test_orm_metadata_and_migrated_schema_do_not_drift(engine: sa_async.AsyncEngine) -> None:
    def _diff(conn: sa.Connection) -> list[object]:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": tables.include_name,
            },
        )
        return list(compare_metadata(ctx, tables.metadata))

    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []


async def test_migrated_database_is_at_head(engine: sa_async.AsyncEngine) -> None:
    await migrate.check_at_head(engine)
    assert await migrate.current_revision(engine) == migrate.head_revision()


async def test_concurrent_migrate_is_idempotent_under_the_advisory_lock(
    pg_server_url: str,
) -> None:
    """Four processes migrate one empty database at once, as replicas starting together do."""
    name = f"kairo_m_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(db_engine.plain_dsn(pg_server_url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = db_engine.asyncpg_url(pg_server_url).set(database=name).render_as_string(False)
        code = (
            "import asyncio, sys; from kairo_ingest.db import migrate; "
            "asyncio.run(migrate.upgrade(sys.argv[1]))"
        )
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-c", code, url) for _ in range(4)
        ]
        codes = await asyncio.gather(*(p.wait() for p in procs))
        assert codes == [0, 0, 0, 0]
        eng = db_engine.create(url)
        try:
            await migrate.check_at_head(eng)
        finally:
            await eng.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_empty_database_is_reported_as_not_at_head(pg_server_url: str) -> None:
    eng = db_engine.create(pg_server_url)
    try:
        # The server's default database has no alembic_version table.
        with pytest.raises(errors.SchemaNotAtHeadError, match="kairo-ingest migrate"):
            await migrate.check_at_head(eng)
    finally:
        await eng.dispose()


async def test_evidence_uniqueness_rules_are_enforced_by_the_database(
    engine: sa_async.AsyncEngine,
) -> None:
    brand = uuid.uuid4()
    t = tables.normalized_evidence_items
    row = {
        "brand_id": brand,
        "platform": "tiktok",
        "content_type": "short_video",
        "external_id": "7592641437091532062",
        "canonical_url": "https://www.tiktok.com/@acme/video/7592641437091532062",
    }
    async with engine.begin() as conn:
        await conn.execute(sa.insert(t), row)
    with pytest.raises(errors.DatabaseConstraintError):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(t), {**row, "canonical_url": "https://other"})
    web = {
        "brand_id": brand,
        "platform": "web",
        "content_type": "web_page",
        "canonical_url": "https://acme.example/blog/",
    }
    async with engine.begin() as conn:
        await conn.execute(sa.insert(t), web)
    with pytest.raises(errors.DatabaseConstraintError):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(t), web)
    with pytest.raises(errors.DatabaseConstraintError, match="non_web_has_external_id"):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(t), {**row, "external_id": None})
