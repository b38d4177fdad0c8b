"""``jobs show`` lists every attempt of a job: who ran it, when, how it ended, its error,
the Apify runs it started and what they cost. Three failing attempts, read back through
the real CLI (``--json`` and text).

Before, a job that failed three times kept only the third attempt's ``last_error`` and
``lease_owner``; its runs sat in ``apify_runs`` with no link to the attempt that made them.
"""

from __future__ import annotations

import asyncio
import pathlib
import signal
import uuid

import pipeline_e2e_kit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import sources
from support import outcomes

SIM_CONFIG = {
    "seed": 3,
    "time_factor": 0.01,
    "ready_seconds": 1,
    "duration_min_seconds": 20,
    "duration_max_seconds": 40,
    "outcome_weights": {"FAILED": 1.0},  # every run fails: every attempt fails
}


async def test_jobs_show_lists_three_failing_attempts_with_their_errors_and_runs(
    engine: sa_async.AsyncEngine,
    db_url: str,
    processes: kit.Processes,
    simulator: kit.Simulator,
    tmp_path: pathlib.Path,
) -> None:
    await simulator.configure(SIM_CONFIG)
    brand = uuid.uuid4()
    await sources.add(
        engine, brand_id=brand, platform="tiktok", capability="profile_videos", identifier="@h"
    )
    env = kit.cli_env(
        db_url=db_url,
        apify_url=simulator.base_url,
        data_dir=tmp_path,
        KAIRO_RETRY_BASE_SECONDS="0.05",
        KAIRO_RETRY_CAP_SECONDS="0.1",
    )
    job = await processes.cli(env, "enqueue", "--brand", str(brand), "--max-attempts", "3")
    worker = await processes.spawn([*kit.kairo_command(), "run"], env, log_name="worker")

    async def failed_for_good() -> bool:
        async with engine.connect() as conn:
            status = await conn.scalar(
                sa.text("SELECT status FROM jobs WHERE id = :id"), {"id": job["id"]}
            )
        return bool(status == "failed")

    await kit.wait_until(failed_for_good, what="the job failed for good")
    worker.send_signal(signal.SIGTERM)
    assert await processes.exit_code(worker, kit.BOUND_SECONDS) == 0

    shown = await processes.cli(env, "jobs", "show", job["id"])
    assert (shown["status"], shown["attempts"], shown["claims"]) == ("failed", 3, 3)
    attempts = shown["attempt_history"]
    assert [(a["number"], a["outcome"], a["job_status"]) for a in attempts] == [
        (1, "failed", "pending"),
        (2, "failed", "pending"),
        (3, "failed", "failed"),
    ]
    cost = {run["id"]: run["usageTotalUsd"] for run in await simulator.runs()}
    for attempt in attempts:
        assert attempt["owner"] == shown["lease_owner"]
        assert attempt["started_at"] <= attempt["ended_at"]
        assert attempt["error_kind"] == "apify_failed"
        [run] = attempt["runs"]  # each attempt started its own run
        assert run["status"] == "FAILED"
        assert run["apify_run_id"] in attempt["error"]
        assert attempt["cost_usd"] == run["usage_total_usd"] == cost[run["apify_run_id"]]
    assert len({a["runs"][0]["apify_run_id"] for a in attempts}) == 3

    text = await asyncio.create_subprocess_exec(
        *kit.kairo_command(), "jobs", "show", job["id"],
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await outcomes.within(kit.BOUND_SECONDS, text.communicate())
    assert text.returncode == 0, err.decode(errors="replace")
    printed = out.decode()
    assert "attempts (3)" in printed
    for attempt in attempts:
        assert f"#{attempt['number']}  failed" in printed
        assert attempt["runs"][0]["apify_run_id"] in printed
