"""``jobs cancel`` stops the spending, end to end: the real CLI, a worker, the simulator.

A brand's runs are in flight on two Apify accounts (the default one and a named one,
whose runs only its own token may see or abort). ``kairo-ingest jobs cancel`` commits the
cancel with a ``NOTIFY kairo_ledger``; the worker's run ledger wakes, aborts every run of
the job with the token of the account that started it (forced, through ABORTING), and
records each end with its cost. The promise: 15 s after the cancel, no run of the job is
still running at the simulator (the test prints how long it really took).
"""

from __future__ import annotations

import pathlib
import signal
import sys
import time
import uuid
from typing import Any

import pipeline_e2e_kit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import secretbox

LIVE = ("READY", "RUNNING", "TIMING-OUT", "ABORTING")
TOKEN_B = "apify_api_tenantBBBBBBBBBBBBBBBBBB0002"
PROMISE_SECONDS = 15.0

SIM_CONFIG: dict[str, Any] = {
    "seed": 15,
    "time_factor": 0.05,
    "ready_seconds": 5,
    "duration_min_seconds": 1200,  # a minute of real time: the cancel comes mid-run
    "duration_max_seconds": 1200,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "forced_abort_seconds": 0.5,  # a forced abort still passes through ABORTING
}
SOURCES = (
    ("instagram", "posts", "@acme", None),
    ("tiktok", "profile_videos", "@acme", "tenant-b"),
    ("youtube", "channel_videos", "https://www.youtube.com/@acme", None),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/acme/", "tenant-b"),
)


async def _rows(engine: sa_async.AsyncEngine, query: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text(query), params)).all())


async def test_no_run_of_a_cancelled_job_is_running_15_s_after_the_cancel(
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
        KAIRO_SECRET_KEY=secretbox.generate_key(),
        KAIRO_LEASE_SECONDS="30",  # the cancel, not a lost lease, is what ends the job
        KAIRO_LEDGER_INTERVAL_SECONDS="600",  # only the NOTIFY can wake it in time
    )
    await processes.cli(env, "accounts", "add", "--name", "tenant-b", stdin=TOKEN_B + "\n")
    brand = uuid.uuid4()
    for platform, capability, identifier, account in SOURCES:
        args = ["sources", "add", "--brand", str(brand), "--platform", platform]
        args += ["--capability", capability, "--identifier", identifier]
        await processes.cli(env, *args, *(["--account", account] if account else []))
    job = await processes.cli(env, "enqueue", "--brand", str(brand))
    worker = await processes.spawn([*kit.kairo_command(), "run"], env, log_name="worker")

    async def all_running() -> bool:
        rows = await _rows(
            engine,
            "SELECT apify_run_id FROM apify_runs WHERE job_id = :job",
            job=uuid.UUID(job["id"]),
        )
        ids = {r.apify_run_id for r in rows}
        if len(ids) < len(SOURCES) or None in ids:
            return False
        live = {r["id"] for r in await simulator.runs() if r["status"] == "RUNNING"}
        return ids <= live

    await kit.wait_until(all_running, what="every run of the job RUNNING at the simulator")
    started = time.monotonic()
    cancelled = await processes.cli(env, "jobs", "cancel", job["id"])
    # The cancel returns at once: a running job is marked, and its holder ends it
    # cancelled at its next heartbeat; its runs are the ledger's from now on.
    assert cancelled["status"] == "running"
    assert cancelled["cancel_requested_at"] is not None
    runs = {
        r.apify_run_id
        for r in await _rows(
            engine, "SELECT apify_run_id FROM apify_runs WHERE job_id = :job", job=cancelled["id"]
        )
    }

    async def none_running() -> bool:
        return not [r for r in await simulator.runs() if r["id"] in runs and r["status"] in LIVE]

    await kit.wait_until(none_running, bound=PROMISE_SECONDS, what="no run of the job running")
    took = time.monotonic() - started

    async def all_recorded() -> bool:
        rows = await _rows(
            engine,
            "SELECT status FROM apify_runs WHERE job_id = :job",
            job=uuid.UUID(job["id"]),
        )
        return all(r.status == "ABORTED" for r in rows)

    await kit.wait_until(all_recorded, what="every end recorded")
    sys.stderr.write(f"cancel: no run of the job running {took:.2f}s after `jobs cancel`\n")
    sim_runs = {r["id"]: r for r in await simulator.runs()}
    rows = await _rows(
        engine,
        "SELECT apify_run_id, account, status, partial_reason, ended_by, usage_total_usd "
        "FROM apify_runs WHERE job_id = :job",
        job=uuid.UUID(job["id"]),
    )
    for row in rows:
        assert (row.status, row.partial_reason) == ("ABORTED", "aborted"), row
        assert float(row.usage_total_usd) == sim_runs[row.apify_run_id]["usageTotalUsd"], row
    assert {r.account for r in rows} == {"default", "tenant-b"}
    assert (await simulator.stats())["foreignTokenRequests"] == 0
    assert await processes.cli(env, "ledger", "--unfollowed") == []

    async def job_cancelled() -> bool:
        return (await processes.cli(env, "jobs", "show", job["id"]))["status"] == "cancelled"

    await kit.wait_until(job_cancelled, what="the job ended cancelled by its holder")
    slots = await _rows(engine, "SELECT count(*) AS n FROM run_slots")
    assert slots[0].n == 0
    worker.send_signal(signal.SIGINT)
    assert await processes.exit_code(worker, kit.BOUND_SECONDS) == 0
