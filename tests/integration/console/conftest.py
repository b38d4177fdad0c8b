"""A demo-seeded database, made once per session and cloned for each test."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from console_seed import Seeded, seed
from sqlalchemy.engine import make_url

from kairo_ingest.db import engine as db_engine


def _url(server_url: str, name: str) -> str:
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def _admin(server_url: str, statement: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(server_url), timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def seeded_template(pg_server_url: str, template_db: str) -> Iterator[tuple[str, Seeded]]:
    name = f"kairo_console_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    try:
        yield name, asyncio.run(seed(_url(pg_server_url, name)))
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def seeded(pg_server_url: str, seeded_template: tuple[str, Seeded]) -> Iterator[Seeded]:
    """This test's own copy of the demo-seeded database."""
    template, info = seeded_template
    name = f"kairo_console_t_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield dataclasses.replace(info, url=_url(pg_server_url, name))
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
