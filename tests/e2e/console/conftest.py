"""The console as a real ``kairo-ingest console`` process on a demo-seeded database."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
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

import cli_kit  # noqa: E402
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


def start_console(
    url: str, *args: str, token: str | None = None, **env: str
) -> tuple[subprocess.Popen[str], str]:
    """Start ``kairo-ingest console`` on a free port; return it and its base URL."""
    port = cli_kit.free_port()
    values = {"KAIRO_DATABASE_URL": url, **env}
    if token is not None:
        values["KAIRO_CONSOLE_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "kairo_ingest", "console", "--port", str(port), *args],
        env=cli_kit.env(**values),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    cli_kit.wait_for(f"{base}/login", 200 if token else 303, proc=proc, within=60)
    return proc, base


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM, then its exit code, stdout and stderr (the pipes are closed)."""
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5)
    return proc.returncode, out, err
