"""Bad input at the CLI: exit 2, one line on stderr, and the database unchanged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from cli_kit import cli, cli_json, env

from kairo_ingest.db import engine as db_engine

BRAND = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
ADD = (
    "sources",
    "add",
    "--brand",
    BRAND,
    "--platform",
    "instagram",
    "--capability",
    "posts",
    "--identifier",
    "acme",
    "--settings",
)

CASES: dict[str, tuple[str, ...]] = {
    # 120,000 bytes: under Linux's 128 KiB limit for one argument.
    "settings nested 60,000 deep": (*ADD, "[" * 60_000 + "]" * 60_000),
    "settings nested 1,000 deep": (*ADD, '{"a":' * 1_000 + "1" + "}" * 1_000),
    "settings NaN": (*ADD, '{"x": NaN}'),
    "settings Infinity": (*ADD, '{"x": -Infinity}'),
    "settings 1e400": (*ADD, '{"x": 1e400}'),
    "settings NUL in a value": (*ADD, '{"x": "a\\u0000b"}'),
    "settings NUL in a key": (*ADD, '{"a\\u0000": 1}'),
    "settings lone surrogate": (*ADD, '{"x": ["\\ud800"]}'),
    "priority 2^31": ("enqueue", "--brand", BRAND, "--priority", str(2**31)),
    "priority below int": ("enqueue", "--brand", BRAND, "--priority", str(-(2**31) - 1)),
    "max-attempts 2^31": ("enqueue", "--brand", BRAND, "--max-attempts", str(2**31)),
    "limit 2^31": ("jobs", "list", "--limit", str(2**31)),
    "simulator port 99999": ("simulator", "--port", "99999"),
    "run concurrency 1,000,000": ("run", "--drain", "--concurrency", "1000000"),
    "prune -1 days": ("jobs", "prune", "--older-than-days", "-1"),
    "prune nan days": ("jobs", "prune", "--older-than-days", "nan"),
    "prune inf days": ("jobs", "prune", "--older-than-days", "inf"),
    "prune 1e308 days": ("jobs", "prune", "--older-than-days", "1e308"),
}


async def _snapshot_async(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(db_engine.plain_dsn(url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        out = {}
        for row in tables:
            name = row["tablename"]
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{name}" t')
            out[name] = "\n".join(sorted(r["row"] for r in rows))
        return out
    finally:
        await conn.close()


def snapshot(url: str) -> dict[str, str]:
    """Every table's row count and content hash."""
    return asyncio.run(_snapshot_async(url))


@pytest.fixture
def environ(db_url: str, tmp_path: Path) -> dict[str, str]:
    base = env(
        KAIRO_DATABASE_URL=db_url,
        KAIRO_DATA_DIR=str(tmp_path / "data"),
        KAIRO_APIFY_SIMULATOR="true",  # so `run` would start if its arguments were accepted
        KAIRO_HTTP_PORT="0",
    )
    # One source and one finished job, so that a prune that deletes anything shows.
    cli_json(*ADD[:-1], environ=base)
    job = cli_json("enqueue", "--brand", BRAND, environ=base)
    cli_json("jobs", "cancel", job["id"], environ=base)
    return base


@pytest.mark.parametrize("args", list(CASES.values()), ids=list(CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    args: tuple[str, ...], environ: dict[str, str], db_url: str
) -> None:
    before = snapshot(db_url)
    done = cli(*args, environ=environ, timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("kairo-ingest"), lines[0]
    assert "Traceback" not in done.stderr
    assert snapshot(db_url) == before


def test_retention_0_keeps_every_finished_job_and_says_so(
    environ: dict[str, str], db_url: str
) -> None:
    before = snapshot(db_url)
    kept = cli_json("jobs", "prune", environ={**environ, "KAIRO_FINISHED_JOB_RETENTION_DAYS": "0"})
    assert kept["deleted"] == 0
    assert "KAIRO_FINISHED_JOB_RETENTION_DAYS is 0" in kept["kept"]
    assert snapshot(db_url) == before
    # An explicit --older-than-days 0 is a finite number >= 0: it deletes what finished.
    assert cli_json("jobs", "prune", "--older-than-days", "0", environ=environ)["deleted"] == 1


def test_a_bad_retention_setting_exits_2_naming_it(environ: dict[str, str], db_url: str) -> None:
    before = snapshot(db_url)
    done = cli("jobs", "prune", environ={**environ, "KAIRO_FINISHED_JOB_RETENTION_DAYS": "inf"})
    assert done.returncode == 2, done.stderr
    assert "KAIRO_FINISHED_JOB_RETENTION_DAYS" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert snapshot(db_url) == before
