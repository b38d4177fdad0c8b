"""End to end through the real CLI: brands on every platform, faults, ``kill -9``, restart.

The simulator and the workers are separate processes; the brands, sources and jobs are
made with ``kairo-ingest sources add`` and ``enqueue``. A first ``kairo-ingest run`` is
killed with SIGKILL while Apify runs are in flight; ``kairo-ingest run --drain`` then
finishes the work. The checks recompute, with the simulator's own dataset functions,
exactly what every run served, and hold the database to it:

* every job is terminal, succeeded unless its evidence shows failures it ran out of
  attempts on, and its evidence status names every enabled source exactly once;
* every run the simulator started is bound to exactly one ``apify_runs`` row (no orphans,
  not even a run whose start request was cut short, and no double starts), and the
  simulator's start count equals the rows with an Apify run id;
* every row a fetched run served is stored raw exactly once, with the served JSON;
* every content item is normalized into exactly one evidence row per brand, which refers
  back to every raw row that carried it (duplicates fold in; nothing is lost);
* every poison row (error item, item without an id) has a skip reason, and only those.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
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

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import datasets
from support import outcomes

BRANDS = ("acme", "globex", "initech", "umbrella")
CAP = "12"  # items per run (web is bounded by its start URLs: 3)
MAX_ATTEMPTS = 6  # the kill costs one attempt, FAILED runs may cost a few more

NOISE = {"error_500": 0.02, "error_502": 0.02, "error_503": 0.02, "error_429": 0.02, "drop": 0.02}
SIM_CONFIG: dict[str, Any] = {
    "seed": 20260107,
    "time_factor": 0.05,  # runs take 2-5 real seconds
    "ready_seconds": 10,
    "duration_min_seconds": 40,
    "duration_max_seconds": 100,
    "outcome_weights": {"SUCCEEDED": 0.9, "FAILED": 0.1},
    "error_item_share": 0.1,
    "missing_id_share": 0.1,
    "duplicate_share": 0.15,
    "faults": {
        "get_run": {kind: 2 * share for kind, share in NOISE.items()},  # fewer requests
        "items": NOISE,
        # The start reached Apify (the run exists) but its answer was lost.
        "start": {"drop": 0.15, "error_502": 0.1, "after_effect": True},
        "list_runs": {"error_503": 0.03},
        "input": {"error_500": 0.03},
    },
}


async def _setup(
    processes: kit.Processes, env: dict[str, str]
) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, set[str]], list[str]]:
    """Sources on every platform for each brand, then one compile job each (all via the CLI)."""
    brands = {uuid.uuid4(): name for name in BRANDS}
    bound = asyncio.Semaphore(6)

    async def add(brand: uuid.UUID, name: str, spec: tuple[Any, ...]) -> dict[str, Any]:
        platform, capability, identifier, settings = spec
        args = [
            "sources",
            "add",
            "--brand",
            str(brand),
            "--platform",
            platform,
            "--capability",
            capability,
            "--identifier",
            identifier.format(h=name),
        ]
        if settings is not None:
            args += ["--settings", json.dumps(settings).replace("{h}", name)]
        async with bound:
            return dict(await processes.cli(env, *args))

    added = await asyncio.gather(
        *(add(b, n, spec) for i, (b, n) in enumerate(brands.items()) for spec in _sources_of(i))
    )
    sources: dict[uuid.UUID, set[str]] = collections.defaultdict(set)
    for source in added:
        sources[uuid.UUID(source["brand_id"])].add(source["id"])
    job_ids: list[str] = []
    for brand in brands:
        job = await processes.cli(
            env, "enqueue", "--brand", str(brand), "--max-attempts", str(MAX_ATTEMPTS)
        )
        assert job["status"] == "pending"
        job_ids.append(job["id"])
    return brands, sources, job_ids


def _sources_of(brand_number: int) -> tuple[tuple[Any, ...], ...]:
    """The first brand has every capability; the others one per platform (in turns), which
    keeps the CLI calls few while every platform and capability runs for several brands."""
    if brand_number == 0:
        return kit.ALL_SOURCES
    odd = brand_number % 2 == 1
    skip = {
        ("instagram", "posts" if odd else "reels"),
        ("linkedin", "company_posts" if odd else "profile_posts"),
    }
    return tuple(spec for spec in kit.ALL_SOURCES if (spec[0], spec[1]) not in skip)


async def _rows(engine: sa_async.AsyncEngine, query: str) -> list[sa.Row[Any]]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.text(query))).all())


async def test_kill_9_mid_run_then_drain_stores_everything_served_exactly_once(
    engine: sa_async.AsyncEngine,
    db_url: str,
    processes: kit.Processes,
    simulator: kit.Simulator,
    tmp_path: pathlib.Path,
) -> None:
    await simulator.configure(SIM_CONFIG)
    caps = {
        f"KAIRO_CAP_{platform.upper()}_{capability.upper()}": CAP
        for platform, capability, _, _ in kit.ALL_SOURCES
    }
    env = kit.cli_env(db_url=db_url, apify_url=simulator.base_url, data_dir=tmp_path, **caps)
    started = time.monotonic()
    brands, sources, job_ids = await _setup(processes, env)
    set_up = time.monotonic()
    assert sorted(len(ids) for ids in sources.values()) == [5, 5, 5, len(kit.ALL_SOURCES)]

    # A worker, killed with SIGKILL once Apify runs are recorded and jobs are running.
    doomed = await processes.spawn([*kit.kairo_command(), "run"], env, log_name="worker-killed")

    async def mid_run() -> bool:
        assert doomed.returncode is None, processes.log_tail(doomed)
        (row,) = await _rows(
            engine,
            "SELECT (SELECT count(*) FROM apify_runs WHERE apify_run_id IS NOT NULL) AS started,"
            " (SELECT count(*) FROM jobs WHERE status = 'running') AS running",
        )
        return bool(row.started >= 1 and row.running >= 1)

    await kit.wait_until(mid_run, what="an Apify run recorded while jobs run")
    os.kill(doomed.pid, signal.SIGKILL)
    killed = time.monotonic()
    killed_at = dt.datetime.now(dt.UTC)
    assert await processes.exit_code(doomed, kit.BOUND_SECONDS) == -signal.SIGKILL
    in_flight = {
        r.id: r.status
        for r in await _rows(
            engine, "SELECT id, status FROM apify_runs WHERE raw_stored_at IS NULL"
        )
    }
    assert in_flight, "the kill should leave runs behind to resume"

    # `run --drain` exits once nothing is ready or running. Its reaper requeues the dead
    # worker's jobs with a backoff, and failed attempts retry after one, so a job can still
    # be pending (not ready yet) when a drain ends: drain again until every job is terminal.
    drains = 0

    async def ready_or_running() -> bool:
        (row,) = await _rows(
            engine,
            "SELECT count(*) FILTER (WHERE status IN ('pending', 'running')) AS active,"
            " count(*) FILTER (WHERE status = 'running'"
            "   OR (status = 'pending' AND available_at <= now())) AS busy FROM jobs",
        )
        return bool(row.busy or not row.active)

    while True:
        await kit.wait_until(ready_or_running, what="a job ready to run")
        (active,) = await _rows(
            engine, "SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')"
        )
        if not active.n:
            break
        drains += 1
        assert drains <= 8, "the jobs should be done after a few drains"
        rescuer = await processes.spawn(
            [*kit.kairo_command(), "run", "--drain"], env, log_name=f"worker-drain-{drains}"
        )
        code = await processes.exit_code(rescuer, kit.BOUND_SECONDS)
        assert code == 0, processes.log_tail(rescuer)

    drained = time.monotonic()
    sys.stderr.write(
        f"setup {set_up - started:.1f}s, first worker {killed - set_up:.1f}s, "
        f"{drains} drain(s) {drained - killed:.1f}s\n"
    )
    await simulator.configure({"faults": None})  # the checks read the simulator cleanly
    await _check_jobs(engine, job_ids, sources)
    logs = sorted(tmp_path.glob("worker-*.log"))
    served = await _check_runs_against_simulator(engine, simulator, in_flight, killed_at, logs)
    await _check_evidence(engine, brands, served)


async def _check_jobs(
    engine: sa_async.AsyncEngine, job_ids: list[str], sources: dict[uuid.UUID, set[str]]
) -> None:
    jobs = await _rows(
        engine,
        "SELECT id, brand_id, status, attempts, max_attempts, evidence_status, last_error "
        "FROM jobs",
    )
    assert sorted(str(j.id) for j in jobs) == sorted(job_ids)
    for job in jobs:
        status = job.evidence_status
        assert status is not None, job
        named = [
            e["source_id"]
            for bucket in ("refreshed", "reused", "skipped", "failed")
            for e in status[bucket]
        ]
        assert sorted(named) == sorted(sources[job.brand_id]), status
        if job.status == "failed":
            # Only a job out of attempts on failed sources may fail; each failure classified.
            assert job.attempts == job.max_attempts, job
            assert status["failed"], job
            assert all(e["error_kind"] and e["error"] for e in status["failed"]), status
        else:
            assert job.status == "succeeded", job
            assert not status["failed"], status
            assert len(status["refreshed"]) == len(sources[job.brand_id]), status


async def _check_runs_against_simulator(
    engine: sa_async.AsyncEngine,
    sim: kit.Simulator,
    in_flight: dict[Any, str],
    killed_at: dt.datetime,
    logs: list[pathlib.Path],
) -> dict[Any, tuple[Any, datasets.DatasetPlan, datasets.Source]]:
    """Start accounting, then each fetched run's raw rows against what it served.

    Returns, per fetched run (our ``apify_runs.id``): its brand, plan and source.
    """
    stats = await sim.stats()
    sim_runs = {r["id"]: r for r in await sim.runs()}
    runs = await _rows(
        engine,
        "SELECT r.id, r.job_id, r.source_connection_id, r.attempt, r.brand_id, r.actor_id, "
        "r.input, r.apify_run_id, r.status, r.intent_at, r.created_at, r.error_kind, "
        "r.error_summary, r.raw_stored_at, r.raw_item_count, j.status AS job_status "
        "FROM apify_runs r JOIN jobs j ON j.id = r.job_id",
    )
    recorded = [r.apify_run_id for r in runs if r.apify_run_id is not None]
    # No orphans, no double starts: each simulator run belongs to exactly one row.
    orphans = set(sim_runs) - set(recorded)
    if orphans:
        detail = await _orphan_report(engine, sim, orphans, sim_runs, logs)
        raise AssertionError(f"simulator runs no apify_runs row records:\n{detail}")
    assert stats["starts"] == len(recorded), (stats, len(recorded))
    assert sorted(recorded) == sorted(sim_runs)
    # What was in flight at the kill was taken up again: nothing is left half done.
    by_id = {r.id: r for r in runs}
    for run_id in in_flight:
        row = by_id[run_id]
        if row.status == "STARTING" and row.job_status != "failed":
            same = [
                r
                for r in runs
                if (r.job_id, r.source_connection_id) == (row.job_id, row.source_connection_id)
            ]
            detail = await _orphan_report(engine, sim, set(), sim_runs, logs)
            raise AssertionError(f"left STARTING: {row}\nsame job and source: {same}\n{detail}")
    assert stats["faults"], "faults were configured and should have struck"
    sys.stderr.write(
        f"starts {stats['starts']}, rows with a run id {len(recorded)}, "
        f"rows in flight at the kill {collections.Counter(in_flight.values())}, "
        f"faults {stats['faults']}\n"
    )

    cfg = sim_config.SimConfig()
    cfg.apply(SIM_CONFIG)
    raw = await _rows(
        engine,
        "SELECT id, apify_run_id, item_index, raw_json, skip_reason FROM raw_apify_items",
    )
    raw_by_run: dict[Any, list[Any]] = collections.defaultdict(list)
    for row in raw:
        raw_by_run[row.apify_run_id].append(row)

    fetched: dict[Any, tuple[Any, datasets.DatasetPlan, datasets.Source]] = {}
    for run in runs:
        if run.status != "SUCCEEDED":
            assert not raw_by_run.get(run.id), f"a {run.status} run has raw items"
            continue
        if run.raw_stored_at is None:
            assert run.job_status == "failed", run
            continue
        count = sim_runs[run.apify_run_id]["itemCount"]
        plan = datasets.served_plan(cfg, run.actor_id, run.apify_run_id, run.input, count)
        expected = list(
            datasets.items_window(
                cfg, run.actor_id, run.apify_run_id, run.input, total=count, offset=0, limit=count
            )
        )
        stored = sorted(raw_by_run.get(run.id, []), key=lambda r: r.item_index)
        assert [r.item_index for r in stored] == list(range(count)), run
        assert run.raw_item_count == count
        source = datasets.source_of(run.input)
        for row, item in zip(stored, expected, strict=True):
            assert row.raw_json == item, (run.apify_run_id, row.item_index)
            if _carried(run, plan, source, row.item_index) is None:
                assert row.skip_reason, (plan.rows[row.item_index], row.raw_json)
            else:
                assert row.skip_reason is None, (plan.rows[row.item_index], row.skip_reason)
        fetched[run.id] = (run, plan, source)
    assert sum(len(rows) for rows in raw_by_run.values()) == sum(
        p.item_count for _, p, _ in fetched.values()
    )
    poison = sum(p.poison_count for _, p, _ in fetched.values())
    duplicates = sum(p.count("duplicate") for _, p, _ in fetched.values())
    assert poison > 0, "the scenario should serve poison items"
    assert duplicates > 0, "the scenario should serve duplicates"
    return fetched


def _carried(
    run: Any, plan: datasets.DatasetPlan, source: datasets.Source, index: int
) -> str | None:
    """The content id the row at ``index`` carries, or None for a poison row."""
    row = plan.rows[index]
    if row.content_row is None:
        return None
    return datasets.content_id(run.actor_id, source, row.content_row)


async def _check_evidence(
    engine: sa_async.AsyncEngine,
    brands: dict[uuid.UUID, str],
    fetched: dict[Any, tuple[Any, datasets.DatasetPlan, datasets.Source]],
) -> None:
    """Each served content item: exactly one evidence row per brand, referring to its rows."""
    raw = await _rows(
        engine, "SELECT id, apify_run_id, item_index, skip_reason FROM raw_apify_items"
    )
    # raw item id -> (brand, actor, content id) of the content it carries, or None (poison)
    carries: dict[int, tuple[Any, str, str] | None] = {}
    for row in raw:
        run, plan, source = fetched[row.apify_run_id]
        carried = _carried(run, plan, source, row.item_index)
        carries[row.id] = None if carried is None else (run.brand_id, run.actor_id, carried)
    served = {key for key in carries.values() if key is not None}

    evidence = await _rows(
        engine,
        "SELECT id, brand_id, platform, content_type, raw_refs FROM normalized_evidence_items",
    )
    referenced: collections.Counter[int] = collections.Counter()
    owner: dict[tuple[Any, str, str], Any] = {}
    for item in evidence:
        assert item.brand_id in brands
        refs = [(ref["apify_run_id"], ref["raw_item_id"]) for ref in item.raw_refs]
        assert len(refs) == len(set(refs)), f"raw_refs repeat a reference: {item.raw_refs}"
        keys: set[tuple[Any, str, str] | None] = set()
        for run_id, raw_id in refs:
            referenced[raw_id] += 1
            run, _, _ = fetched[uuid.UUID(run_id)]
            assert run.brand_id == item.brand_id
            keys.add(carries[raw_id])
        assert len(keys) == 1, (item, keys)
        key = outcomes.only(keys)
        assert key is not None, f"evidence {item.id} refers to a poison row"
        assert key not in owner, f"content {key} normalized twice: {owner[key]}, {item.id}"
        owner[key] = item.id
    assert set(owner) == served, (len(owner), len(served))
    for raw_id, key in carries.items():
        # Content rows (and their duplicates) feed exactly one evidence row; poison none.
        assert referenced[raw_id] == (0 if key is None else 1), (raw_id, key)


async def _input_of(sim: kit.Simulator, run_id: str) -> Any:
    """The run's INPUT record as the simulator stored it; None when it has none."""
    reply = await sim.http.get(f"/v2/actor-runs/{run_id}/key-value-store/records/INPUT")
    if reply.status_code == 404:
        return None
    reply.raise_for_status()
    return reply.json()


async def _orphan_report(
    engine: sa_async.AsyncEngine,
    sim: kit.Simulator,
    orphans: set[str],
    sim_runs: dict[str, dict[str, Any]],
    logs: list[pathlib.Path],
) -> str:
    """What we know of runs the simulator started that no row records (for the failure)."""
    rows = await _rows(
        engine,
        "SELECT id, job_id, source_connection_id, attempt, status, apify_run_id, intent_at, "
        "started_at, error_kind, error_summary, input, actor_id FROM apify_runs "
        "ORDER BY intent_at",
    )
    lines = []
    for orphan in sorted(orphans):
        run = sim_runs[orphan]
        sim_input = await _input_of(sim, orphan)
        lines.append(f"orphan {orphan} {run} input {sim_input}")
        for row in rows:
            if row.input == sim_input or datasets.normalize_actor(row.actor_id) == run["actor"]:
                same = "SAME INPUT" if row.input == sim_input else "same actor"
                lines.append(
                    f"  {same}: row {row.id} source {row.source_connection_id} attempt "
                    f"{row.attempt} {row.status} apify_run_id={row.apify_run_id} "
                    f"intent_at={row.intent_at} error={row.error_kind}: {row.error_summary}"
                )
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if any(word in line for word in ("apify_", "source_failed", "lease")):
                lines.append(f"{path.name}: {line[:400]}")
    return "\n".join(lines)
