"""The console as a real ``kairo-ingest console`` process on a demo-seeded database."""

from __future__ import annotations

import asyncio
import pathlib
import sys
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from kairo_ingest.db import engine as db_engine

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cli"))
sys.path.insert(0, str(HERE.parents[1] / "integration" / "console"))

import console_seed  # noqa: E402


async def _admin(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(server_url), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=[True], ids=["with-xss-rows"])
def seeded(
    request: pytest.FixtureRequest, pg_server_url: str, template_db: str
) -> Iterator[console_seed.Seeded]:
    """A demo-seeded database; ``@pytest.mark.parametrize("seeded", [False], indirect=True)``
    leaves out the rows with script text (the browser test adds them after screenshots)."""
    name = f"kairo_console_e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield asyncio.run(console_seed.seed(url, xss=request.param))
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
