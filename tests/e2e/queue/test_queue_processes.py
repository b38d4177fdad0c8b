"""The queue across real worker processes: concurrent drain, kill -9 and SIGTERM."""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config
from kairo_ingest.queue import jobs
from kairo_ingest.worker import context, core, parameters
from support import outcomes

SCRIPT = pathlib.Path(__file__).with_name("queue_worker_proc.py")
BOUND_SECONDS = 60.0


async def spawn(url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        url,
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_file(path: pathlib.Path) -> None:
    async with asyncio.timeout(BOUND_SECONDS):
        while not path.exists():
            await asyncio.sleep(0.01)


async def finished(proc: asyncio.subprocess.Process) -> int:
    _, stderr = await outcomes.within(BOUND_SECONDS, proc.communicate())
    assert proc.returncode is not None
    if proc.returncode != 0:
        sys.stderr.write(stderr.decode(errors="replace"))
    return proc.returncode


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(BOUND_SECONDS):
        while not await condition():
            await asyncio.sleep(0.05)


@pytest.fixture
async def killer() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes registered here are killed at the end of the test, whatever happened."""
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_several_worker_processes_run_every_job_exactly_once(
    engine: sa_async.AsyncEngine,
    db_url: str,
    tmp_path: pathlib.Path,
    killer: list[asyncio.subprocess.Process],
) -> None:
    total = 3000
    await jobs.enqueue_many(engine, kind="noop", count=total)
    records = [tmp_path / f"worker-{i}.txt" for i in range(4)]
    gate = tmp_path / "gate"
    procs = [
        await spawn(
            db_url,
            *("--mode", "drain", "--concurrency", "16", "--record", str(record)),
            *("--owner", f"w{i}", "--gate", str(gate)),
        )
        for i, record in enumerate(records)
    ]
    killer.extend(procs)
    # Every process is up before any claims: one alone drains 3000 no-ops in well under a
    # second, faster than the others start.
    for i in range(4):
        await wait_for_file(tmp_path / f"gate.w{i}")
    gate.touch()
    codes = await asyncio.gather(*(finished(p) for p in procs))
    assert codes == [0, 0, 0, 0]
    runs = collections.Counter(
        line for record in records for line in record.read_text().split() if line
    )
    assert len(runs) == total
    assert set(runs.values()) == {1}
    # Work was shared: no process drained the queue alone.
    assert all(record.read_text().strip() for record in records)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(sa.text("SELECT status, attempts, count(*) FROM jobs GROUP BY 1, 2"))
        ).all()
    assert [tuple(r) for r in rows] == [("succeeded", 1, total)]


async def test_a_killed_worker_s_job_is_picked_up_after_its_lease_expires_and_completes_once(
    engine: sa_async.AsyncEngine,
    db_url: str,
    killer: list[asyncio.subprocess.Process],
) -> None:
    job, _ = await jobs.enqueue(engine, kind="block", brand_id=uuid.uuid4())
    doomed = await spawn(db_url, "--mode", "block", "--owner", "doomed", "--lease", "2")
    killer.append(doomed)

    async def running_in_doomed() -> bool:
        row = await jobs.get(engine, job.id)
        assert row is not None
        return row.status == "running" and row.lease_owner == "doomed"

    await wait_until(running_in_doomed)
    os.kill(doomed.pid, signal.SIGKILL)
    assert await doomed.wait() == -signal.SIGKILL

    completions: list[uuid.UUID] = []

    async def block(ctx: context.JobContext) -> context.Outcome:
        completions.append(ctx.lease.job_id)
        return context.Outcome(evidence_status={"by": "rescuer"})

    settings = config.Settings(
        lease_seconds=30,
        poll_interval_seconds=0.1,
        listen_notify=False,
        retry_base_seconds=0.01,  # the reclaim backoff stays short in this test
        retry_cap_seconds=0.05,
        snooze_seconds=0.01,
        reap_interval_seconds=0.1,
        finished_job_retention_days=0,
        shutdown_grace_seconds=5,
    )
    rescuer = core.Worker(
        engine,
        {"block": block},
        parameters.WorkerConfig.from_settings(settings, owner="rescuer", concurrency=2),
    )
    task = asyncio.create_task(rescuer.run())
    try:

        async def succeeded() -> bool:
            row = await jobs.get(engine, job.id)
            assert row is not None
            return row.status == "succeeded"

        await wait_until(succeeded)
    finally:
        rescuer.request_stop()
        await outcomes.within(BOUND_SECONDS, task)
    row = await jobs.get(engine, job.id)
    assert row is not None
    assert completions == [job.id]
    # The reap refunded the dead worker's attempt (an interruption, not the job's failure).
    assert (row.attempts, row.claims, row.interruptions) == (1, 2, 1)
    assert (row.lease_owner, row.evidence_status) == ("rescuer", {"by": "rescuer"})
    assert row.last_error == "lease of doomed expired during attempt 1"


async def test_sigterm_releases_in_flight_jobs_with_the_attempt_restored(
    engine: sa_async.AsyncEngine,
    db_url: str,
    killer: list[asyncio.subprocess.Process],
) -> None:
    await jobs.enqueue_many(engine, kind="block", count=3)
    proc = await spawn(db_url, "--mode", "block", "--owner", "graceful", "--grace", "3")
    killer.append(proc)

    async def all_running() -> bool:
        return (await jobs.stats(engine))["counts"]["running"] == 3

    await wait_until(all_running)
    proc.send_signal(signal.SIGTERM)
    assert await finished(proc) == 0
    rows = await jobs.list_jobs(engine)
    assert {(r.status, r.attempts, r.lease_token) for r in rows} == {("pending", 0, None)}
