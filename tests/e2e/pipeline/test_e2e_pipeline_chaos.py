"""Chaos end to end: every platform behaviour of issue 8 on, several workers, ``kill -9``.

The simulator behaves like the real platform at its least kind: input-schema defaults in
the stored INPUT, replica lag (404 and absence from lists after a start), runs created
seconds after their start answer was lost, concurrent-runs limits answered 400, 402 or
403, INPUT reads redirected to signed storage URLs, TIMING-OUT and slow graceful aborts,
and clean pagination that counts rows it does not return; plus dropped connections and
5xx. Three workers run the jobs; two are killed with SIGKILL mid-flight; drains finish.

The product's promise, checked against the simulator's own records:

* 0 orphan runs: every run the simulator started is recorded by exactly one row (no
  exemption, not even for a run whose request body never arrived);
* 0 duplicate runs for one (job, source) attempt;
* 0 runs left running once every job is terminal.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import pathlib
import signal
import sys
import time
import uuid
from typing import Any

import pipeline_e2e_kit as kit
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import sources

BRANDS = ("acme", "globex", "initech")
WORKERS = 3
MAX_ATTEMPTS = 6
LIVE = ("READY", "RUNNING", "TIMING-OUT", "ABORTING")

SIM_CONFIG: dict[str, Any] = {
    "seed": 8,
    "time_factor": 0.05,  # runs take 1-4 real seconds
    "ready_seconds": 5,
    "duration_min_seconds": 20,
    "duration_max_seconds": 80,
    # Apify's own timeout (timeoutSecs = our run deadline) is far away: outcomes are drawn.
    "outcome_weights": {"SUCCEEDED": 0.85, "FAILED": 0.05, "TIMED-OUT": 0.1},
    "empty_item_share": 0.1,  # clean=true: Count exceeds the items returned
    "error_item_share": 0.05,
    # Issue 8's platform behaviours, all on.
    "input_defaults": True,
    "visibility_lag_seconds": 1.0,
    "late_creation_seconds": 3.5,  # longer than the lease: a takeover must let it settle
    "max_concurrent_runs": 10,
    "limit_error_statuses": [400, 402, 403],
    "record_redirects": True,
    "timing_out_seconds": 1.0,
    "abort_grace_seconds": 3.0,
    "faults": {
        "start": {"drop": 0.2, "error_502": 0.1, "after_effect": True},
        "get_run": {"error_500": 0.03, "error_503": 0.03, "drop": 0.03},
        "list_runs": {"error_503": 0.05},
        "input": {"error_500": 0.05},
        "items": {"error_502": 0.03, "truncate": 0.03},
    },
}


async def _rows(engine: sa_async.AsyncEngine, query: str) -> list[sa.Row[Any]]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text(query))).all())


async def _setup(
    engine: sa_async.AsyncEngine, processes: kit.Processes, env: dict[str, str]
) -> list[str]:
    """Every platform's sources for each brand (straight into the database: the CLI's
    ``sources add`` is covered by the other end-to-end tests), then a job each via the CLI."""
    brands = {uuid.uuid4(): name for name in BRANDS}
    for brand, name in brands.items():
        for platform, capability, identifier, settings in kit.ALL_SOURCES:
            await sources.add(
                engine,
                brand_id=brand,
                platform=platform,
                capability=capability,
                identifier=identifier.format(h=name),
                settings=json.loads(json.dumps(settings).replace("{h}", name))
                if settings
                else None,
            )
    jobs = []
    for brand in brands:
        job = await processes.cli(
            env, "enqueue", "--brand", str(brand), "--max-attempts", str(MAX_ATTEMPTS)
        )
        jobs.append(job["id"])
    return jobs


async def test_chaos_with_every_platform_behaviour_pays_once_and_leaves_nothing_running(
    engine: sa_async.AsyncEngine,
    db_url: str,
    processes: kit.Processes,
    simulator: kit.Simulator,
    tmp_path: pathlib.Path,
) -> None:
    await simulator.configure(SIM_CONFIG)
    caps = {f"KAIRO_CAP_{p.upper()}_{c.upper()}": "8" for p, c, _, _ in kit.ALL_SOURCES}
    env = kit.cli_env(
        db_url=db_url,
        apify_url=simulator.base_url,
        data_dir=tmp_path,
        **caps,
    )
    started = time.monotonic()
    job_ids = await _setup(engine, processes, env)
    set_up = time.monotonic()
    workers = [
        await processes.spawn([*kit.kairo_command(), "run"], env, log_name=f"worker-{n}")
        for n in range(WORKERS)
    ]

    async def recorded(at_least: int) -> bool:
        (row,) = await _rows(
            engine, "SELECT count(*) AS n FROM apify_runs WHERE apify_run_id IS NOT NULL"
        )
        return bool(row.n >= at_least)

    async def first_recorded() -> bool:
        return await recorded(1)

    async def more_recorded() -> bool:
        return await recorded(6)

    await kit.wait_until(first_recorded, what="a first Apify run recorded")
    os.kill(workers[0].pid, signal.SIGKILL)
    await kit.wait_until(more_recorded, what="more Apify runs recorded")
    os.kill(workers[1].pid, signal.SIGKILL)
    for doomed in workers[:2]:
        assert await processes.exit_code(doomed, kit.BOUND_SECONDS) == -signal.SIGKILL
    killed = time.monotonic()

    async def all_terminal() -> bool:
        (row,) = await _rows(
            engine, "SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')"
        )
        return bool(row.n == 0)

    async def drain_until_done() -> None:
        # The surviving worker goes on; drains add a hand while jobs remain.
        while not await all_terminal():
            rescuer = await processes.spawn(
                [*kit.kairo_command(), "run", "--drain"], env, log_name="worker-drain"
            )
            assert await processes.exit_code(rescuer, kit.BOUND_SECONDS) == 0
            await asyncio.sleep(0.2)

    await asyncio.wait_for(drain_until_done(), kit.BOUND_SECONDS)
    workers[2].send_signal(signal.SIGTERM)
    await processes.exit_code(workers[2], kit.BOUND_SECONDS)
    done = time.monotonic()

    # Runs still ABORTING (a graceful abort by anyone) are given their grace to end.
    async def none_live() -> bool:
        return not [r for r in await simulator.runs() if r["status"] in LIVE]

    await kit.wait_until(none_live, bound=10, what="no run left running")
    stats = await simulator.stats()
    sim_runs = {r["id"]: r for r in await simulator.runs()}
    rows = await _rows(
        engine,
        "SELECT job_id, source_connection_id, attempt, apify_run_id, status FROM apify_runs",
    )
    recorded_ids = [r.apify_run_id for r in rows if r.apify_run_id is not None]
    orphans = set(sim_runs) - set(recorded_ids)
    per_attempt = collections.Counter(
        (r.job_id, r.source_connection_id, r.attempt) for r in rows if r.apify_run_id
    )
    duplicates = {key: n for key, n in per_attempt.items() if n > 1}
    sys.stderr.write(
        f"chaos: setup {set_up - started:.1f}s, until the kills {killed - set_up:.1f}s, "
        f"then {done - killed:.1f}s; "
        f"simulator starts {stats['starts']} (late {stats['lateStarts']}), rows with a run "
        f"{len(recorded_ids)}, orphans {len(orphans)}, duplicates {len(duplicates)}, "
        f"rejected {stats['rejected']}, redirects {stats['redirects']}, "
        f"statuses {collections.Counter(r['status'] for r in sim_runs.values())}, "
        f"faults {sum(stats['faults'].values())}\n"
    )
    jobs = await _rows(engine, "SELECT id, status, evidence_status FROM jobs")
    assert sorted(str(j.id) for j in jobs) == sorted(job_ids)
    assert all(j.status in ("succeeded", "failed") for j in jobs), jobs
    assert all(j.evidence_status is not None for j in jobs), jobs
    assert not orphans, [sim_runs[o] for o in orphans]
    assert not duplicates, duplicates
    assert len(recorded_ids) == len(set(recorded_ids)) == stats["starts"]
    assert stats["runs"]["active"] == 0
    assert stats["lateStarts"] > 0, "late creations should have happened"
    assert stats["redirects"] > 0, "INPUT reads should have been redirected"
