"""PostgreSQL restarts for a few seconds while jobs are in flight.

An embedded PostgreSQL of the test's own (not the shared one), a simulator whose runs
take several seconds, and a real ``kairo-ingest run``. Once every job is running and
its Apify runs are started, the server is stopped (fast shutdown: sessions are
terminated), kept down for a few seconds, and started again. Expected: every job ends
succeeded on attempt 1, and the simulator saw exactly one run per source (no
duplicate Apify runs).

What makes it pass: statements inside a job retry DatabaseUnavailableError with backoff
within the lease (pipeline/tx.py), and heartbeats on their own connection whose loss
margin outlasts a short outage (worker/lease_keeper.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg
import httpx
import outage_kit
import pytest
from sqlalchemy.engine import make_url

from kairo_ingest.db import embedded, migrate, sources
from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import statuses
from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes

pytestmark = pytest.mark.slow

BRANDS = 4
SOURCES = (("instagram", "posts", "@{h}"), ("tiktok", "profile_videos", "@{h}"))
OUTAGE_SECONDS = 4.0  # how long the server stays down: the point of the test, not a wait
BOUND_SECONDS = 150.0
SIM_CONFIG = {
    "seed": 11,
    "time_factor": 0.1,  # runs take 6-9 real seconds: the outage falls inside them
    "ready_seconds": 1,
    "duration_min_seconds": 60,
    "duration_max_seconds": 90,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "default_item_count": 30,
}


def _kairo() -> list[str]:
    script = pathlib.Path(sys.executable).with_name("kairo-ingest")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kairo_ingest"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _poll(condition: Any, what: str, bound: float = BOUND_SECONDS) -> None:
    deadline = time.monotonic() + bound
    while not await condition():
        assert time.monotonic() < deadline, f"not within {bound:.0f}s: {what}"
        await asyncio.sleep(0.1)


def _stop_fast(pg: embedded.EmbeddedPostgres) -> None:
    """SIGINT to the postmaster is PostgreSQL's fast shutdown: every session is terminated."""
    pid = pg._server.get_pid()
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, "PostgreSQL did not stop"
        time.sleep(0.05)


def _pg_ctl_start(pg: embedded.EmbeddedPostgres, socket_dir: str) -> None:
    from pgserver import _commands

    server = pg._server
    argv = [str(_commands.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), "-w"]
    argv += ["-t", "60", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start"]
    done = subprocess.run(
        argv, user=server.system_user, capture_output=True, text=True, timeout=90, check=False
    )
    log_tail = pathlib.Path(server.log).read_text(errors="replace")[-1500:]
    assert done.returncode == 0, (done.stdout, done.stderr, log_tail)


async def _job_rows(url: str) -> list[tuple[str, int]] | None:
    try:
        conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        rows = await conn.fetch("SELECT status, attempts FROM jobs ORDER BY created_at")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    return [(r["status"], r["attempts"]) for r in rows]


async def test_a_few_seconds_of_postgres_restart_cost_no_attempt_and_no_duplicate_run(
    tmp_path: pathlib.Path,
) -> None:
    # Not under tmp_path: as root the server runs as another user, who must reach pgdata.
    pg_dir = pathlib.Path(tempfile.mkdtemp(prefix="kairo-restart-pg-"))
    pg_dir.chmod(0o755)
    pg = await embedded.start(pg_dir)
    procs: list[asyncio.subprocess.Process] = []
    try:
        url = pg.url
        socket_dir = make_url(url).query["host"]
        assert isinstance(socket_dir, str)
        await migrate.upgrade(url)

        sim_port = _free_port()
        sim_base = f"http://127.0.0.1:{sim_port}"
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
        with (tmp_path / "simulator.log").open("wb") as log_file:
            sim = await asyncio.create_subprocess_exec(
                *_kairo(), "simulator", "--host", "127.0.0.1", "--port", str(sim_port),
                env=base_env, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        procs.append(sim)
        async with httpx.AsyncClient(base_url=sim_base, timeout=5) as http:

            async def sim_configured() -> bool:
                try:
                    reply = await http.post("/_sim/config", json=SIM_CONFIG)
                except httpx.TransportError:
                    return False
                return reply.status_code == 200

            await _poll(sim_configured, "the simulator answers")

            engine = db_engine.create(url, pool_size=2, max_overflow=0)
            try:
                for b in range(BRANDS):
                    brand = uuid.uuid4()
                    for platform, capability, identifier in SOURCES:
                        await sources.add(
                            engine,
                            brand_id=brand,
                            platform=platform,
                            capability=capability,
                            identifier=identifier.format(h=f"restart{b}"),
                        )
                    await queue_jobs.enqueue(engine, kind=statuses.JobKind.COMPILE, brand_id=brand)
            finally:
                await engine.dispose()

            env = {
                **base_env,
                "KAIRO_DATABASE_URL": url,
                "KAIRO_APIFY_BASE_URL": sim_base,
                "KAIRO_APIFY_TOKEN": "restart-test-token-0123456789",
                "KAIRO_DATA_DIR": str(tmp_path),
                "KAIRO_HTTP_PORT": "0",
                "KAIRO_LOG_FORMAT": "json",
                "KAIRO_LEASE_SECONDS": "20",  # the outage is well inside the lease
                "KAIRO_POLL_INTERVAL_SECONDS": "0.2",
                "KAIRO_RETRY_BASE_SECONDS": "0.5",
            }
            with (tmp_path / "worker.log").open("wb") as log_file:
                worker = await asyncio.create_subprocess_exec(
                    *_kairo(), "run", env=env, cwd=tmp_path,
                    stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
            procs.append(worker)

            async def runs_in_flight() -> bool:
                runs = (await http.get("/_sim/runs")).json()["runs"]
                return len(runs) == BRANDS * len(SOURCES)

            await _poll(runs_in_flight, "every source's Apify run started")
            await asyncio.to_thread(_stop_fast, pg)
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(_pg_ctl_start, pg, socket_dir)

            async def all_finished() -> bool:
                assert worker.returncode is None, (tmp_path / "worker.log").read_text()[-3000:]
                rows = await _job_rows(url)
                return rows is not None and all(
                    status in ("succeeded", "failed", "cancelled") for status, _ in rows
                )

            await _poll(all_finished, "every job finished")
            rows = await _job_rows(url)
            runs = (await http.get("/_sim/runs")).json()["runs"]

        worker_log = (tmp_path / "worker.log").read_text()
        if os.environ.get("KAIRO_TEST_KEEP_LOG"):
            pathlib.Path(os.environ["KAIRO_TEST_KEEP_LOG"]).write_text(worker_log)
        assert len(runs) == BRANDS * len(SOURCES), json.dumps(runs)[:2000]
        assert rows == [("succeeded", 1)] * BRANDS, (rows, worker_log[-3000:])
        assert "[SQL" not in worker_log
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await outcomes.within(15, proc.wait())
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        await pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)


async def test_a_restart_at_every_phase_of_the_drain_costs_no_attempt_and_no_wait_for_the_reaper(
    tmp_path: pathlib.Path,
) -> None:
    """PostgreSQL stops for 5 s in the middle of a drain: claims in flight, runs starting,
    pages being written, budget slots released; jobs enqueued before, during and after the
    outage. Every job succeeds on attempt 1, none waits for its lease to run out (reaped or
    given up), and the simulator saw one run per source.

    Before: a pooled connection reopened while the server refused connections (the budget
    release's, a page write's) raised an untranslated ConnectionRefusedError that failed
    the source and spent the job's attempt, and a claim whose answer was lost left its
    jobs to the reaper a lease later."""
    pg_dir = pathlib.Path(tempfile.mkdtemp(prefix="kairo-phases-pg-"))
    pg_dir.chmod(0o755)
    pg = await embedded.start(pg_dir)
    procs: list[asyncio.subprocess.Process] = []
    sim: outage_kit.Simulator | None = None
    try:
        url = pg.url
        socket_dir = make_url(url).query["host"]
        assert isinstance(socket_dir, str)
        await migrate.upgrade(url)
        sim = await outage_kit.start_simulator(tmp_path / "simulator.log")
        procs.append(sim.proc)
        before = await outage_kit.add_brands(url, 10, "before")
        during = await outage_kit.add_brands(url, 3, "during")
        after = await outage_kit.add_brands(url, 3, "after")
        total = len(before) + len(during) + len(after)
        await outage_kit.enqueue(url, before)
        env = outage_kit.worker_env(url, sim.base_url, tmp_path)
        worker = await outage_kit.start_worker(env, tmp_path)
        procs.append(worker)

        async def in_full_flow() -> bool:
            # Some jobs done, some running with runs in flight, some still waiting to be
            # claimed: every phase at once.
            found = await outage_kit.counts(url)
            return (
                found.get("succeeded", 0) >= 1
                and found.get("running", 0) >= 3
                and found.get("pending", 0) >= 1
                and len(await sim.runs()) >= 6
            )

        await outage_kit.poll(in_full_flow, "jobs at every phase")
        await asyncio.to_thread(_stop_fast, pg)
        asked_during = asyncio.create_task(outage_kit.enqueue(url, during, until_it_lands=True))
        await asyncio.sleep(5.0)  # the outage itself: the point of the test, not a wait
        await asyncio.to_thread(_pg_ctl_start, pg, socket_dir)
        await outcomes.within(60, asked_during)
        await outage_kit.enqueue(url, after)
        await outage_kit.wait_all_finished(url, total, worker, tmp_path)
        figures = await outage_kit.assert_every_job_succeeded_on_its_first_attempt(
            url, sim, total, tmp_path
        )
        print(f"restart at every phase: {figures}")
    finally:
        await outage_kit.stop(procs)
        if sim is not None:
            await sim.aclose()
        await pg.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)
