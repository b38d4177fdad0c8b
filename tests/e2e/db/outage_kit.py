"""Helpers for the end-to-end tests where the database goes away under a real worker:
brands and their sources, jobs enqueued before, during and after an outage, the real CLI
and simulator as processes, and the checks every such test ends with.

Nothing here is collected as a test. Every wait polls a condition under a generous bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import sources
from kairo_ingest.domain import statuses
from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes

BOUND_SECONDS = 240.0  # a drain that takes this long has hung
SOURCES = (
    ("instagram", "posts", "@{h}"),
    ("tiktok", "profile_videos", "@{h}"),
    ("youtube", "channel_videos", "https://www.youtube.com/@{h}"),
)
# Runs take 0.5-6 real seconds, so an outage finds them at every phase: starting,
# waiting, their pages being written, their budget slots being released.
SIM_CONFIG: dict[str, Any] = {
    "seed": 18,
    "time_factor": 0.1,
    "ready_seconds": 1,
    "duration_min_seconds": 5,
    "duration_max_seconds": 60,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "default_item_count": 30,
}
# Infrastructure ends of an attempt that mean a job waited for its lease to run out.
WAITED_FOR_THE_LEASE = ("reaped", "given_up")


def kairo() -> list[str]:
    script = pathlib.Path(sys.executable).with_name("kairo-ingest")
    return [str(script)] if script.exists() else [sys.executable, "-m", "kairo_ingest"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def poll(
    condition: Callable[[], Awaitable[bool]], what: str, bound: float = BOUND_SECONDS
) -> None:
    deadline = time.monotonic() + bound
    while not await condition():
        assert time.monotonic() < deadline, f"not within {bound:.0f}s: {what}"
        await asyncio.sleep(0.1)


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}


def worker_env(db_url: str, sim_url: str, data_dir: pathlib.Path) -> dict[str, str]:
    return {
        **base_env(),
        "KAIRO_DATABASE_URL": db_url,
        "KAIRO_APIFY_BASE_URL": sim_url,
        "KAIRO_APIFY_TOKEN": "outage-test-token-0123456789",
        "KAIRO_DATA_DIR": str(data_dir),
        "KAIRO_HTTP_PORT": "0",
        "KAIRO_LOG_FORMAT": "json",
        "KAIRO_LEASE_SECONDS": "30",  # an outage of a few seconds is well inside the lease
        "KAIRO_CONCURRENCY": "6",  # jobs are claimed all along, not in one batch
        "KAIRO_APIFY_ACCOUNT_MAX_CONCURRENT_RUNS": "8",  # runs wait for budget slots too
        "KAIRO_POLL_INTERVAL_SECONDS": "0.2",
        "KAIRO_RETRY_BASE_SECONDS": "0.5",
        "KAIRO_SHUTDOWN_GRACE_SECONDS": "10",
    }


class Simulator:
    def __init__(self, proc: asyncio.subprocess.Process, base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def runs(self) -> list[dict[str, Any]]:
        return list((await self.http.get("/_sim/runs")).json()["runs"])

    async def aclose(self) -> None:
        await self.http.aclose()


async def start_simulator(log_path: pathlib.Path) -> Simulator:
    port = free_port()
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *kairo(), "simulator", "--host", "127.0.0.1", "--port", str(port),
            env=base_env(), stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    sim = Simulator(proc, f"http://127.0.0.1:{port}")

    async def configured() -> bool:
        try:
            reply = await sim.http.post("/_sim/config", json=SIM_CONFIG)
        except httpx.TransportError:
            return False
        return reply.status_code == 200

    await poll(configured, "the simulator answers", 60)
    return sim


async def start_worker(env: dict[str, str], workdir: pathlib.Path) -> asyncio.subprocess.Process:
    with (workdir / "worker.log").open("wb") as log_file:
        return await asyncio.create_subprocess_exec(
            *kairo(), "run", env=env, cwd=workdir,
            stdout=log_file, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip


async def stop(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await outcomes.within(20, proc.wait())
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def add_brands(url: str, count: int, tag: str) -> list[uuid.UUID]:
    """``count`` brands with a source per entry of SOURCES each (not yet enqueued)."""
    engine = db_engine.create(url, pool_size=1, max_overflow=0)
    brands = [uuid.uuid4() for _ in range(count)]
    try:
        for n, brand in enumerate(brands):
            for platform, capability, identifier in SOURCES:
                await sources.add(
                    engine,
                    brand_id=brand,
                    platform=platform,
                    capability=capability,
                    identifier=identifier.format(h=f"{tag}{n}"),
                )
    finally:
        await engine.dispose()
    return brands


async def enqueue(url: str, brands: list[uuid.UUID], *, until_it_lands: bool = False) -> None:
    """Enqueue a compile job per brand; with ``until_it_lands``, retry each through an
    outage (a client that asked while the database was away and asked again)."""
    for brand in brands:
        while True:
            engine = db_engine.create(url, pool_size=1, max_overflow=0)
            try:
                await queue_jobs.enqueue(engine, kind=statuses.JobKind.COMPILE, brand_id=brand)
                break
            except Exception:
                if not until_it_lands:
                    raise
                await asyncio.sleep(0.3)
            finally:
                await engine.dispose()


async def rows(url: str, query: str) -> list[asyncpg.Record] | None:
    """The rows of ``query``, or None while the database does not answer."""
    try:
        conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return list(await conn.fetch(query))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    finally:
        with contextlib.suppress(Exception):
            await conn.close()


async def counts(url: str) -> dict[str, int]:
    found = await rows(url, "SELECT status, count(*) AS n FROM jobs GROUP BY status")
    return {} if found is None else {r["status"]: int(r["n"]) for r in found}


async def wait_all_finished(
    url: str, total: int, worker: asyncio.subprocess.Process, workdir: pathlib.Path
) -> None:
    async def finished() -> bool:
        assert worker.returncode is None, (workdir / "worker.log").read_text()[-3000:]
        found = await counts(url)
        done = sum(found.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
        return sum(found.values()) == total and done == total

    await poll(finished, "every job finished")


async def assert_every_job_succeeded_on_its_first_attempt(
    url: str, sim: Simulator, total_jobs: int, workdir: pathlib.Path
) -> dict[str, Any]:
    """Every job succeeded on attempt 1, none waited for its lease to run out, and the
    simulator saw exactly one run per (job, source). Returns figures for the report."""
    log = (workdir / "worker.log").read_text(errors="replace")
    jobs = await rows(url, "SELECT id, status, attempts FROM jobs ORDER BY created_at")
    attempts = await rows(
        url, "SELECT outcome, count(*) AS n FROM job_attempts GROUP BY outcome ORDER BY outcome"
    )
    assert jobs is not None
    assert attempts is not None
    outcomes = {r["outcome"]: int(r["n"]) for r in attempts}
    runs = await sim.runs()
    assert len(jobs) == total_jobs
    assert [(r["status"], r["attempts"]) for r in jobs] == [("succeeded", 1)] * total_jobs, (
        [(str(r["id"]), r["status"], r["attempts"]) for r in jobs if r["attempts"] != 1],
        log[-4000:],
    )
    assert not {k: v for k, v in outcomes.items() if k in WAITED_FOR_THE_LEASE}, outcomes
    assert len(runs) == total_jobs * len(SOURCES), json.dumps(runs)[:2000]
    assert "[SQL" not in log
    return {"outcomes": outcomes, "runs": len(runs)}
