"""The real-PostgreSQL test harness.

The server comes from KAIRO_TEST_DATABASE_URL when set, else the local server on
127.0.0.1:5432 when it answers, else an embedded PostgreSQL started for the session.
A template database is migrated once; each test that asks for ``db_url`` gets its
own database cloned from it with ``CREATE DATABASE ... TEMPLATE``.

Under CI (``support.ci``) a session in which any test skipped fails: a missing tool or
service must show as red, never as a quiet skip.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate
from support import ci, properties

LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=3)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=10)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    explicit = os.environ.get("KAIRO_TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if asyncio.run(_answers(LOCAL_URL)):
        yield LOCAL_URL
        return
    from kairo_ingest.db import embedded

    data_dir = pathlib.Path(tempfile.mkdtemp(prefix="kairo-test-pg-"))
    pg = asyncio.run(embedded.start(data_dir))
    try:
        yield pg.url
    finally:
        asyncio.run(pg.stop())


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    name = f"kairo_tpl_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    url = _with_database(pg_server_url, name)
    asyncio.run(migrate.upgrade(url))
    try:
        yield name
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"kairo_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    try:
        yield _with_database(pg_server_url, name)
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[sa_async.AsyncEngine]:
    eng = db_engine.create(db_url, pool_size=5)
    try:
        yield eng
    finally:
        await eng.dispose()


# The inner loop is `pytest -m "not slow"` (docs/contributing.md): every e2e test, and every
# integration test that needs PostgreSQL, is marked slow here by where it lives and what it
# asks for; a test elsewhere that is slow says so itself (`pytest.mark.slow`).
_DATABASE_FIXTURES = frozenset({"db_url", "template_db", "pg_server_url"})
_TESTS = pathlib.Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    e2e, integration = _TESTS / "e2e", _TESTS / "integration"
    for item in items:
        path = item.path
        if path.is_relative_to(e2e) or (
            path.is_relative_to(integration)
            and _DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        ):
            item.add_marker(pytest.mark.slow)


# Hypothesis' `fast` profile is the inner loop's (support.properties); CI runs every
# property test in full, so there the option is an error rather than a quiet weakening.
properties.register()


def pytest_configure(config: pytest.Config) -> None:
    profile = config.getoption("--hypothesis-profile", default=None)
    if ci.in_ci() and profile == properties.FAST_PROFILE:
        raise pytest.UsageError(
            f"CI is set: --hypothesis-profile={profile} would run fewer examples than CI must"
        )
    properties.choose(profile)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if ci.in_ci() and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if ci.in_ci() and _skipped:
        write = terminalreporter.write_line
        write(f"CI is set and {len(_skipped)} test(s) skipped: that fails the run", red=True)
        for nodeid in _skipped:
            write(f"  skipped under CI: {nodeid}", red=True)
