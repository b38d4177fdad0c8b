"""Chaos end to end: every platform behaviour on, several workers, ``kill -9``, sources
moved between accounts and a job cancelled mid-run.

The simulator behaves like the real platform at its least kind: input-schema defaults in
the stored INPUT, replica lag (404 and absence from lists after a start), runs created
seconds after their start answer was lost, concurrent-runs limits answered 400, 402 or
403, INPUT reads redirected to signed storage URLs, TIMING-OUT and slow graceful aborts,
clean pagination that counts rows it does not return, charge caps (runs carry
``maxTotalChargeUsd``; a capped run finishes early or the platform aborts it), forced
aborts through ABORTING, and account isolation (a run, its INPUT, dataset, log and abort
answer 404 to another account's token); plus dropped connections and 5xx. Brands run on
three accounts. Three workers run the jobs; two are killed with SIGKILL mid-flight;
sources move between accounts and one brand's job is cancelled while its runs go on;
drains finish.

The product's promise, checked against the simulator's own records:

* 0 orphan runs: every run the simulator started is recorded by exactly one row (no
  exemption, not even for a run whose request body never arrived);
* 0 duplicate runs for one (job, source) attempt;
* 0 runs left running once every job is terminal, and every run recorded as ended;
* every ended run's cost recorded equal to the simulator's;
* 0 requests made with the wrong account's token.
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

from kairo_ingest import secretbox
from kairo_ingest.db import sources
from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes

# Each brand's sources run on an account; hooli's job is cancelled mid-run.
BRANDS = {"acme": None, "globex": "tenant-a", "initech": "tenant-b", "hooli": "tenant-a"}
CANCELLED = "hooli"
TOKENS = {
    "tenant-a": "apify_api_tenantAAAAAAAAAAAAAAAAAA0001",
    "tenant-b": "apify_api_tenantBBBBBBBBBBBBBBBBBB0002",
}
# Sources that move to another account once runs are in flight: (brand, platform, to).
MOVES = (
    ("acme", "youtube", "tenant-a"),
    ("globex", "instagram", "tenant-b"),
    ("initech", "tiktok", None),
)
WORKERS = 3
MAX_ATTEMPTS = 6
LIVE = ("READY", "RUNNING", "TIMING-OUT", "ABORTING")
MAX_CHARGE_USD = "0.02"
ENDED = (
    "SUCCEEDED",
    "FAILED",
    "TIMED-OUT",
    "ABORTED",
)  # a run of 8 items and 80 s at 1 GB would cost about $0.027

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
    # The platform's defaults, lag, limits and redirects, all on.
    "input_defaults": True,
    "visibility_lag_seconds": 1.0,
    "late_creation_seconds": 3.5,  # longer than the lease: a takeover must let it settle
    "max_concurrent_runs": 10,
    "limit_error_statuses": [400, 402, 403],
    "record_redirects": True,
    "timing_out_seconds": 1.0,
    "abort_grace_seconds": 3.0,
    "forced_abort_seconds": 0.5,
    # Charge caps: capped runs end either way.
    "charge_cap_outcome_weights": {"SUCCEEDED": 0.5, "ABORTED": 0.5},
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


async def _enqueue(processes: kit.Processes, env: dict[str, str], brand: uuid.UUID) -> str:
    job = await processes.cli(
        env, "enqueue", "--brand", str(brand), "--max-attempts", str(MAX_ATTEMPTS)
    )
    return str(job["id"])


async def _setup(
    engine: sa_async.AsyncEngine, processes: kit.Processes, env: dict[str, str]
) -> tuple[dict[str, uuid.UUID], dict[str, str]]:
    """The accounts (via the CLI, tokens on stdin); every platform's sources for each brand
    on its account (straight into the database: the CLI's ``sources add`` is covered by the
    other end-to-end tests); then a job each via the CLI, but the one to be cancelled, which
    is enqueued once the kills are over (so that it is still running when it is cancelled,
    however slow the machine)."""
    for name, token in TOKENS.items():
        await processes.cli(env, "accounts", "add", "--name", name, stdin=token + "\n")
    brands = {name: uuid.uuid4() for name in BRANDS}
    for name, brand in brands.items():
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
                account=BRANDS[name],
            )
    jobs = {}
    for name, brand in brands.items():
        if name != CANCELLED:
            jobs[name] = await _enqueue(processes, env, brand)
    return brands, jobs


async def _move_sources(
    processes: kit.Processes, env: dict[str, str], brands: dict[str, uuid.UUID]
) -> None:
    """``sources add ... --account`` on existing sources: they move to another account."""
    for name, platform, to in MOVES:
        for spec_platform, capability, identifier, _settings in kit.ALL_SOURCES:
            if spec_platform != platform:
                continue
            args = ["sources", "add", "--brand", str(brands[name]), "--platform", platform]
            args += ["--capability", capability, "--identifier", identifier.format(h=name)]
            moved = await processes.cli(env, *args, "--account", to or "default")
            assert moved["account"] == (to or "default")


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
        KAIRO_SECRET_KEY=secretbox.generate_key(),
        KAIRO_APIFY_RUN_MAX_CHARGE_USD=MAX_CHARGE_USD,
        KAIRO_LEDGER_INTERVAL_SECONDS="0.5",
        **caps,
    )
    started = time.monotonic()
    brands, job_ids = await _setup(engine, processes, env)
    set_up = time.monotonic()
    workers = [
        await processes.spawn([*kit.kairo_command(), "run"], env, log_name=f"worker-{n}")
        for n in range(WORKERS)
    ]

    async def recorded(at_least: int, brand: uuid.UUID | None = None) -> bool:
        where = "" if brand is None else f" AND brand_id = '{brand}'"
        (row,) = await _rows(
            engine,
            f"SELECT count(*) AS n FROM apify_runs WHERE apify_run_id IS NOT NULL{where}",
        )
        return bool(row.n >= at_least)

    async def first_recorded() -> bool:
        return await recorded(1)

    async def more_recorded() -> bool:
        return await recorded(6)

    async def cancellable() -> bool:
        return await recorded(1, brands[CANCELLED])

    await kit.wait_until(first_recorded, what="a first Apify run recorded")
    os.kill(workers[0].pid, signal.SIGKILL)
    await kit.wait_until(more_recorded, what="more Apify runs recorded")
    os.kill(workers[1].pid, signal.SIGKILL)
    for doomed in workers[:2]:
        assert await processes.exit_code(doomed, kit.BOUND_SECONDS) == -signal.SIGKILL
    killed = time.monotonic()
    job_ids[CANCELLED] = await _enqueue(processes, env, brands[CANCELLED])
    await kit.wait_until(cancellable, what=f"{CANCELLED}'s runs recorded")
    # Cancelled the moment its first run is recorded (in this process: a CLI's start-up
    # on a loaded machine could outlast the job; `jobs cancel` has its own end-to-end
    # test). A running job is marked, and its holder ends it cancelled.
    cancelled = await queue_jobs.cancel(engine, uuid.UUID(job_ids[CANCELLED]))
    assert cancelled is not None
    assert cancelled.status in ("cancelled", "running"), cancelled
    assert cancelled.cancel_requested_at is not None, cancelled
    await _move_sources(processes, env, brands)

    async def all_terminal() -> bool:
        (row,) = await _rows(
            engine, "SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')"
        )
        return bool(row.n == 0)

    async def drain() -> None:
        rescuer = await processes.spawn(
            [*kit.kairo_command(), "run", "--drain"], env, log_name="worker-drain"
        )
        assert await processes.exit_code(rescuer, kit.BOUND_SECONDS) == 0

    async def drain_until_done() -> None:
        # The surviving worker goes on; drains add a hand while jobs remain.
        while not await all_terminal():
            await drain()
            await asyncio.sleep(0.2)

    await outcomes.within(kit.BOUND_SECONDS, drain_until_done())
    workers[2].send_signal(signal.SIGTERM)
    await processes.exit_code(workers[2], kit.BOUND_SECONDS)
    await drain()  # its run ledger settles what no job wants any more before it exits
    done = time.monotonic()

    # Runs still ABORTING (a graceful abort by anyone) are given their grace to end.
    async def none_live() -> bool:
        return not [r for r in await simulator.runs() if r["status"] in LIVE]

    await kit.wait_until(none_live, bound=10, what="no run left running")
    stats = await simulator.stats()
    sim_runs = {r["id"]: r for r in await simulator.runs()}
    rows = await _rows(
        engine,
        "SELECT job_id, brand_id, source_connection_id, attempt, apify_run_id, status, "
        "account, usage_total_usd, partial_reason, ended_by FROM apify_runs",
    )
    recorded_ids = [r.apify_run_id for r in rows if r.apify_run_id is not None]
    orphans = set(sim_runs) - set(recorded_ids)
    per_attempt = collections.Counter(
        (r.job_id, r.source_connection_id, r.attempt) for r in rows if r.apify_run_id
    )
    duplicates = {key: n for key, n in per_attempt.items() if n > 1}
    unended = [r for r in rows if r.apify_run_id and r.status not in ENDED]
    wrong_cost = [
        (r.apify_run_id, r.usage_total_usd, sim_runs[r.apify_run_id]["usageTotalUsd"])
        for r in rows
        if r.apify_run_id in sim_runs
        and (
            r.usage_total_usd is None
            or float(r.usage_total_usd) != sim_runs[r.apify_run_id]["usageTotalUsd"]
        )
    ]
    stopped = [
        (r.status, r.ended_by) for r in rows if r.brand_id == brands[CANCELLED] and r.apify_run_id
    ]
    sys.stderr.write(
        f"chaos: setup {set_up - started:.1f}s, until the kills {killed - set_up:.1f}s, "
        f"then {done - killed:.1f}s; "
        f"simulator starts {stats['starts']} (late {stats['lateStarts']}), rows with a run "
        f"{len(recorded_ids)}, orphans {len(orphans)}, duplicates {len(duplicates)}, "
        f"not ended {len(unended)}, cost differing from the simulator's {len(wrong_cost)}, "
        f"foreign token requests {stats['foreignTokenRequests']}, "
        f"rejected {stats['rejected']}, redirects {stats['redirects']}, "
        f"statuses {collections.Counter(r['status'] for r in sim_runs.values())}, "
        f"partial {collections.Counter(r.partial_reason for r in rows if r.partial_reason)}, "
        f"accounts {collections.Counter(r.account for r in rows if r.apify_run_id)}, "
        f"the cancelled job's ends {collections.Counter(stopped)}, "
        f"faults {sum(stats['faults'].values())}\n"
    )
    jobs = {
        str(j.id): j for j in await _rows(engine, "SELECT id, status, evidence_status FROM jobs")
    }
    assert sorted(jobs) == sorted(job_ids.values())
    for name, job_id in job_ids.items():
        job = jobs[job_id]
        if name == CANCELLED:
            assert job.status == "cancelled", job
        else:
            assert job.status in ("succeeded", "failed"), job
            assert job.evidence_status is not None, job
    assert not orphans, [sim_runs[o] for o in orphans]
    assert not duplicates, duplicates
    assert len(recorded_ids) == len(set(recorded_ids)) == stats["starts"]
    assert not unended, unended
    assert not wrong_cost, wrong_cost
    assert stats["foreignTokenRequests"] == 0
    assert stats["runs"]["active"] == 0
    assert stats["lateStarts"] > 0, "late creations should have happened"
    assert stats["redirects"] > 0, "INPUT reads should have been redirected"
    assert any(r.partial_reason == "charge_cap" for r in rows), "runs should have been capped"
    assert {r.account for r in rows if r.apify_run_id} == {"default", "tenant-a", "tenant-b"}
