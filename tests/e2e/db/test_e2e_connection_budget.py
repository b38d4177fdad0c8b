"""KAIRO_DATABASE_POOL_SIZE caps every connection one replica opens.

A real ``run --drain`` at concurrency 100 works through a few hundred compile jobs
(brands without sources: every handler step is a database statement, so the handlers
press on the pool as hard as they can), while the test counts the process's
connections in ``pg_stat_activity`` by the application name it gave in the URL. Before
the budget, the pool was sized from the concurrency (25 + 10 overflow + LISTEN).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import sys
import uuid

import asyncpg
from sqlalchemy.engine import make_url

from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import statuses
from kairo_ingest.queue import jobs as queue_jobs

JOBS = 400
BUDGET = 15
BOUND_SECONDS = 180.0


async def _enqueue(db_url: str) -> None:
    engine = db_engine.create(db_url, pool_size=4, max_overflow=0)
    try:
        for start in range(0, JOBS, 50):
            await asyncio.gather(
                *(
                    queue_jobs.enqueue(engine, kind=statuses.JobKind.COMPILE, brand_id=uuid.uuid4())
                    for _ in range(start, min(start + 50, JOBS))
                )
            )
    finally:
        await engine.dispose()


async def test_a_worker_at_concurrency_100_never_holds_more_than_its_budget(
    db_url: str, tmp_path: pathlib.Path
) -> None:
    await _enqueue(db_url)
    app = f"kairo-budget-{uuid.uuid4().hex[:8]}"
    url = make_url(db_url).update_query_dict({"application_name": app})
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
    env.update(
        {
            "KAIRO_DATABASE_URL": url.render_as_string(hide_password=False),
            "KAIRO_DATABASE_POOL_SIZE": str(BUDGET),
            "KAIRO_CONCURRENCY": "100",
            "KAIRO_LISTEN_NOTIFY": "true",
            "KAIRO_APIFY_TOKEN": "budget-test-token-0123456789",
            "KAIRO_APIFY_BASE_URL": "http://127.0.0.1:9",
            "KAIRO_HTTP_PORT": "0",
            "KAIRO_DATA_DIR": str(tmp_path),
            "KAIRO_LOG_FORMAT": "json",
            "KAIRO_LOG_LEVEL": "WARNING",
        }
    )
    watcher = await asyncpg.connect(db_engine.plain_dsn(db_url))
    log_path = tmp_path / "run.log"
    peak = 0
    try:
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kairo_ingest",
                "run",
                "--drain",
                env=env,
                cwd=tmp_path,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        async with asyncio.timeout(BOUND_SECONDS):
            while proc.returncode is None:
                count = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app
                )
                peak = max(peak, count)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 0.01)
        assert proc.returncode == 0, log_path.read_text()[-3000:]
        done = await watcher.fetchval("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
    finally:
        await watcher.close()
    assert done == JOBS
    assert peak <= BUDGET, f"{peak} connections, budget {BUDGET}"
    assert peak >= BUDGET // 2, f"only {peak} connections: the test did not press on the pool"
