"""The whole path through a real PgBouncer in transaction mode.

Migrate directly (DDL and the advisory lock want a real session), then add sources,
enqueue and ``run --drain`` through the pooler with KAIRO_DATABASE_POOLER=transaction:
the job succeeds on attempt 1. Before the setting existed every command failed with
``prepared statement "__asyncpg_stmt_1__" already exists``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import asyncpg
import httpx
import pgbouncer_kit
import pytest
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.slow

BOUND_SECONDS = 120.0
BRANDS = 3
SOURCES = (
    ("instagram", "posts", "@{h}"),
    ("tiktok", "profile_videos", "@{h}"),
    ("youtube", "channel_videos", "https://www.youtube.com/@{h}"),
    ("web", "crawl_pages", "https://{h}.example/"),
)
SIM_CONFIG = {
    "seed": 7,
    "time_factor": 0.02,
    "ready_seconds": 1,
    "duration_min_seconds": 2,
    "duration_max_seconds": 5,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "default_item_count": 25,
}


def _kairo() -> list[str]:
    script = pathlib.Path(sys.executable).with_name("kairo-ingest")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kairo_ingest"]


def _cli(env: dict[str, str], cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_kairo(), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=BOUND_SECONDS,
        check=False,
    )


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(make_url(url).render_as_string(hide_password=False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _jobs(url: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT status, attempts FROM jobs ORDER BY created_at")
    finally:
        await conn.close()
    return [(r["status"], r["attempts"]) for r in rows]


@pytest.fixture
def empty_db(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database (not cloned from the migrated template): we migrate it."""
    name = f"kairo_pgb_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(pg_server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def simulator_url(tmp_path: pathlib.Path) -> Iterator[str]:
    port = pgbouncer_kit._free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
    with (tmp_path / "simulator.log").open("wb") as log_file:
        proc = subprocess.Popen(
            [*_kairo(), "simulator", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + BOUND_SECONDS
        while True:
            assert proc.poll() is None, (tmp_path / "simulator.log").read_text()[-2000:]
            try:
                reply = httpx.post(f"{base}/_sim/config", json=SIM_CONFIG, timeout=2)
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the simulator did not answer"
                time.sleep(0.05)
                continue
            assert reply.status_code == 200, reply.text
            break
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_migrate_directly_then_run_through_pgbouncer_in_transaction_mode(
    pg_server_url: str, empty_db: str, simulator_url: str, tmp_path: pathlib.Path
) -> None:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
    base_env.update(
        {
            "KAIRO_APIFY_BASE_URL": simulator_url,
            "KAIRO_APIFY_TOKEN": "pgbouncer-e2e-token-0123456789",
            "KAIRO_DATA_DIR": str(tmp_path),
            "KAIRO_HTTP_PORT": "0",
            "KAIRO_LOG_FORMAT": "json",
            "KAIRO_POLL_INTERVAL_SECONDS": "0.2",
            "KAIRO_LEASE_SECONDS": "10",
        }
    )
    done = _cli({**base_env, "KAIRO_DATABASE_URL": empty_db}, tmp_path, "migrate")
    assert done.returncode == 0, done.stderr

    with pgbouncer_kit.running(pg_server_url, pool_size=3) as port:
        pooled = {
            **base_env,
            "KAIRO_DATABASE_URL": pgbouncer_kit.via(port, empty_db),
            "KAIRO_DATABASE_POOLER": "transaction",
            "KAIRO_LISTEN_NOTIFY": "true",  # ignored behind a transaction pooler
            "KAIRO_CONCURRENCY": "8",
        }
        for b in range(BRANDS):
            brand = str(uuid.uuid4())
            for platform, capability, identifier in SOURCES:
                added = _cli(
                    pooled,
                    tmp_path,
                    "sources",
                    "add",
                    "--brand",
                    brand,
                    "--platform",
                    platform,
                    "--capability",
                    capability,
                    "--identifier",
                    identifier.format(h=f"pgb{b}"),
                )
                assert added.returncode == 0, added.stderr
            enqueued = _cli(pooled, tmp_path, "enqueue", "--brand", brand, "--json")
            assert enqueued.returncode == 0, enqueued.stderr
            assert json.loads(enqueued.stdout)["status"] == "pending"

        drained = _cli(pooled, tmp_path, "run", "--drain")
        logs = drained.stdout + drained.stderr
        assert drained.returncode == 0, logs[-4000:]
        assert "prepared statement" not in logs
        assert "listen_notify_ignored" in logs

    assert asyncio.run(_jobs(empty_db)) == [("succeeded", 1)] * BRANDS
