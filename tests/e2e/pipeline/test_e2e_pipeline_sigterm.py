"""End to end through the real CLI: SIGTERM while an Apify run is in flight.

With a short grace period, ``kairo-ingest run`` gives the job back (pending, attempt
restored, lease cleared) and exits 0, leaving the Apify run alone; the next worker then
waits on that same run instead of starting another one.
"""

from __future__ import annotations

import pathlib
import signal
import uuid
from typing import Any

import pipeline_e2e_kit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from support import outcomes

SIM_CONFIG: dict[str, Any] = {
    "seed": 5,
    "time_factor": 0.05,  # the run takes 4-6 real seconds: SIGTERM lands while it runs
    "ready_seconds": 10,
    "duration_min_seconds": 80,
    "duration_max_seconds": 120,
    "outcome_weights": {"SUCCEEDED": 1.0},
}


async def _one(engine: sa_async.AsyncEngine, query: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text(query), params)).one()


async def test_sigterm_mid_run_releases_the_job_with_its_attempt_restored_and_exits_0(
    engine: sa_async.AsyncEngine,
    db_url: str,
    processes: kit.Processes,
    simulator: kit.Simulator,
    tmp_path: pathlib.Path,
) -> None:
    await simulator.configure(SIM_CONFIG)
    env = kit.cli_env(
        db_url=db_url,
        apify_url=simulator.base_url,
        data_dir=tmp_path,
        KAIRO_SHUTDOWN_GRACE_SECONDS="3",  # the whole exit; in-flight work gets 1.8 s of it
        KAIRO_LEASE_SECONDS="30",  # the release, not a lease expiry, must free the job
    )
    brand = uuid.uuid4()
    source = await processes.cli(
        env,
        "sources",
        "add",
        "--brand",
        str(brand),
        "--platform",
        "tiktok",
        "--capability",
        "profile_videos",
        "--identifier",
        "@acme",
    )
    job = await processes.cli(env, "enqueue", "--brand", str(brand))
    job_id = uuid.UUID(job["id"])

    worker = await processes.spawn([*kit.kairo_command(), "run"], env, log_name="worker-term")

    async def waiting_on_the_run() -> bool:
        assert worker.returncode is None, processes.log_tail(worker)
        row = await _one(
            engine,
            "SELECT j.status, count(r.apify_run_id) AS started, "
            "bool_and(r.status IN ('READY', 'RUNNING')) AS in_flight "
            "FROM jobs j LEFT JOIN apify_runs r ON r.job_id = j.id WHERE j.id = :id "
            "GROUP BY j.status",
            id=job_id,
        )
        return bool(row.status == "running" and row.started == 1 and row.in_flight)

    await kit.wait_until(waiting_on_the_run, what="the job waiting on its Apify run")
    run = await _one(
        engine, "SELECT id, apify_run_id FROM apify_runs WHERE job_id = :id", id=job_id
    )

    worker.send_signal(signal.SIGTERM)
    assert await processes.exit_code(worker, kit.BOUND_SECONDS) == 0, processes.log_tail(worker)

    released = await _one(
        engine,
        "SELECT status, attempts, lease_token, lease_expires_at, "
        "available_at <= now() AS ready FROM jobs WHERE id = :id",
        id=job_id,
    )
    # lease_owner is kept as the last holder's name (the queue's messages use it).
    assert tuple(released) == ("pending", 0, None, None, True)
    stats = await simulator.stats()
    assert (stats["starts"], stats["aborts"]) == (1, 0), "the Apify run is left running"
    in_apify = {r["id"]: r["status"] for r in await simulator.runs()}
    assert in_apify[run.apify_run_id] in ("READY", "RUNNING", "SUCCEEDED")

    # The next worker takes the job up again and waits on the same run: no second start.
    drain = await processes.spawn(
        [*kit.kairo_command(), "run", "--drain"], env, log_name="worker-drain"
    )
    assert await processes.exit_code(drain, kit.BOUND_SECONDS) == 0, processes.log_tail(drain)
    done = await _one(
        engine, "SELECT status, attempts, evidence_status FROM jobs WHERE id = :id", id=job_id
    )
    assert (done.status, done.attempts) == ("succeeded", 1)
    entry = outcomes.only(done.evidence_status["refreshed"])
    assert (entry["source_id"], entry["run_id"], entry["apify_run_id"]) == (
        source["id"],
        str(run.id),
        run.apify_run_id,
    )
    assert entry["raw_items"] > 0
    assert (await simulator.stats())["starts"] == 1
