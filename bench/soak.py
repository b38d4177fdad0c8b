"""Soak: one real worker process for an hour against the simulator with faults.

Runs ``python -m kairo_ingest run`` (the real CLI worker, as a subprocess: "the first
worker") against a fresh database and the Apify simulator (its own process) with
``--faults`` (5 %) spread over every endpoint. Every ``--wave-seconds`` (20) it enqueues a
forced refresh of each of ``--brands`` brands (24, ``--sources`` sources each); a brand's
request folds into its pending job, so the queue never grows beyond one follow-up per
brand. Every ``--kill-every-minutes`` (5) a second worker is started, left to take jobs,
and killed with SIGKILL mid-work; its jobs come back when their leases expire.

Every ``--sample-seconds`` (60) it samples the first worker: RSS (VmRSS of
/proc/PID/status), open file descriptors (/proc/PID/fd), its PostgreSQL connections
(pg_stat_activity rows whose client port is one of the worker's own TCP sockets; the
worker's URL also sets ``application_name``, counted as a cross-check) and its CPU use
since the last sample, and prints a line. When the time is up it stops enqueueing,
lets the queue drain, takes a last sample, and checks:

* raw items stored exactly once per dataset item: for every run whose raw items were
  stored, the rows stored equal the simulator's items of that run (fewer: lost; more,
  or a dataset stored by two rows: duplicated);
* no run paid twice: 0 (job, source, attempt) with more than one Apify run, and every run
  the simulator started is recorded by exactly one row;
* every job ended (none pending or running);
* warm RSS (at ``--warm-minutes`` (5) or a tenth of the run, whichever is earlier) vs
  final RSS: the ratio must stay at or below ``--rss-ratio-max`` (1.10).

It writes ``samples.csv`` and ``soak.png`` (matplotlib, from the ``bench`` extra; an SVG
drawn by hand when matplotlib is not installed) under ``--out``, and exits 1 when an item
was lost or stored twice, a run was paid twice, a job did not end, or the RSS grew past
the bound.

Usage (PostgreSQL at 127.0.0.1:5432, user postgres, trust)::

    python bench/soak.py --minutes 60 --out docs/soak
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from kairo_ingest.db import engine as db_engine
from kairo_ingest.db import migrate, sources
from kairo_ingest.queue import jobs as queue_jobs

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TOKEN = "apify_api_benchSOAKbenchSOAKbench0001"
PRIMARY_APP = "kairo-soak-primary"
SECOND_APP = "kairo-soak-second"
# The sources of each brand, in order: (platform, capability, identifier pattern).
SOURCES = (
    ("instagram", "posts", "@{h}"),
    ("tiktok", "profile_videos", "@{h}"),
    ("youtube", "channel_videos", "https://www.youtube.com/@{h}"),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/{h}/"),
)
TERMINAL = ("succeeded", "failed", "cancelled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default=os.environ.get("KAIRO_BENCH_DSN", DEFAULT_DSN))
    p.add_argument("--minutes", type=float, default=60.0, help="how long the load goes on")
    p.add_argument("--sample-seconds", type=float, default=60.0)
    p.add_argument("--warm-minutes", type=float, default=5.0)
    p.add_argument("--kill-every-minutes", type=float, default=5.0)
    p.add_argument(
        "--second-seconds", type=float, default=15.0, help="least life of a second worker"
    )
    p.add_argument("--brands", type=int, default=24)
    p.add_argument("--sources", type=int, default=3, choices=range(1, len(SOURCES) + 1))
    p.add_argument("--items", type=int, default=40, help="item cap of every source (per run)")
    p.add_argument("--wave-seconds", type=float, default=20.0)
    p.add_argument("--faults", type=float, default=0.05, help="fault rate on every endpoint")
    p.add_argument("--time-factor", type=float, default=0.05, help="runs of 20-120 s take 1-6 s")
    p.add_argument("--concurrency", type=int, default=50, help="the workers' KAIRO_CONCURRENCY")
    p.add_argument("--lease-seconds", type=float, default=10.0)
    p.add_argument("--drain-seconds", type=float, default=300.0, help="bound of the end drain")
    p.add_argument("--rss-ratio-max", type=float, default=1.10)
    p.add_argument("--out", type=Path, default=Path("docs/soak"))
    return p.parse_args(argv)


@dataclass
class Sample:
    minute: float
    rss_kib: int
    fds: int
    pg_connections: int
    pg_by_app_name: int
    simulator_sockets: int
    cpu_percent: float
    running_jobs: int
    jobs_ended: int
    raw_items: int
    second_worker_alive: int


# --- the first worker, seen from /proc -------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    after = stat[stat.rindex(")") + 2 :].split()
    ticks = int(after[11]) + int(after[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def client_ports(pid: int, server_port: int) -> set[int]:
    """Local ports of the process's TCP sockets connected to ``server_port``."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            local, remote, inode = cols[1], cols[2], cols[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


# --- processes -----------------------------------------------------------------------------


def start_simulator(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen[str], str]:
    config = {
        "ready_seconds": 2.0,
        "duration_min_seconds": 20.0,
        "duration_max_seconds": 120.0,
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kairo_apify_sim",
            *("--port", "0", "--seed", "21", "--token", TOKEN),
            *("--time-factor", str(args.time_factor), "--faults", str(args.faults)),
            *("--config-json", json.dumps(config)),
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the simulator did not start; see {log}")
    return proc, str(json.loads(line)["base_url"])


def worker_settings(args: argparse.Namespace) -> dict[str, str]:
    """Settings the workers run with that differ from the service's defaults: a short lease
    and reap interval, so that a killed worker's jobs come back within minutes, and the
    item cap of each source."""
    caps = {
        f"KAIRO_CAP_{platform.upper()}_{capability.upper()}": str(args.items)
        for platform, capability, _ in SOURCES[: args.sources]
    }
    return {
        "KAIRO_CONCURRENCY": str(args.concurrency),
        "KAIRO_LEASE_SECONDS": str(args.lease_seconds),
        "KAIRO_REAP_INTERVAL_SECONDS": "2",
        "KAIRO_RETRY_BASE_SECONDS": "0.5",
        "KAIRO_RETRY_CAP_SECONDS": "5",
        "KAIRO_SNOOZE_SECONDS": "2",
        **caps,
    }


def start_worker(
    url: str, base_url: str, args: argparse.Namespace, app_name: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
    named = make_url(url).update_query_dict({"application_name": app_name})
    env.update(
        KAIRO_DATABASE_URL=named.render_as_string(hide_password=False),
        KAIRO_APIFY_BASE_URL=base_url,
        KAIRO_APIFY_TOKEN=TOKEN,
        KAIRO_HTTP_PORT="0",
        KAIRO_LOG_FORMAT="json",
        KAIRO_LOG_LEVEL="WARNING",
        KAIRO_DATA_DIR=str(log.parent),
        **worker_settings(args),
    )
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "kairo_ingest", "run"],
        env=env,
        stdout=out,
        stderr=out,
        stdin=subprocess.DEVNULL,
        cwd=log.parent,
    )


def stop(proc: subprocess.Popen[Any], grace: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# --- the database ------------------------------------------------------------------------


async def seed_sources(url: str, args: argparse.Namespace) -> list[uuid.UUID]:
    engine = db_engine.create(url, pool_size=1)
    brands = [uuid.uuid4() for _ in range(args.brands)]
    try:
        for number, brand in enumerate(brands):
            for platform, capability, pattern in SOURCES[: args.sources]:
                await sources.add(
                    engine,
                    brand_id=brand,
                    platform=platform,
                    capability=capability,
                    identifier=pattern.format(h=f"soak{number}"),
                )
    finally:
        await engine.dispose()
    return brands


class Db:
    """The soak's own small connection: enqueueing and counting."""

    def __init__(self, url: str, pg_port: int, sim_port: int) -> None:
        self.engine = db_engine.create(url, pool_size=1, application_name="kairo-soak-driver")
        self.pg_port = pg_port
        self.sim_port = sim_port

    async def wave(self, brands: list[uuid.UUID]) -> None:
        for brand in brands:
            await queue_jobs.enqueue(
                self.engine, kind="compile", brand_id=brand, params={"force_refresh": True}
            )

    async def scalar(self, query: str, **params: Any) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.scalar(sa.text(query), params)) or 0)

    async def rows(self, query: str) -> list[sa.Row[Any]]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.text(query))).all())

    async def running_of(self, pid: int) -> int:
        return await self.scalar(
            "SELECT count(*) FROM jobs j JOIN workers w ON w.owner = j.lease_owner "
            "WHERE j.status = 'running' AND w.pid = :pid",
            pid=pid,
        )

    async def open_jobs(self) -> int:
        return await self.scalar("SELECT count(*) FROM jobs WHERE status IN ('pending','running')")

    async def sample(self, pid: int, minute: float, cpu: float, second_alive: bool) -> Sample:
        ports = sorted(client_ports(pid, self.pg_port))
        by_port = await self.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY(:ports)", ports=ports
        )
        by_name = await self.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name",
            name=PRIMARY_APP,
        )
        return Sample(
            minute=round(minute, 2),
            rss_kib=rss_kib(pid),
            fds=fd_count(pid),
            pg_connections=by_port,
            pg_by_app_name=by_name,
            simulator_sockets=len(client_ports(pid, self.sim_port)),
            cpu_percent=round(cpu, 1),
            running_jobs=await self.scalar("SELECT count(*) FROM jobs WHERE status = 'running'"),
            jobs_ended=await self.scalar(
                "SELECT count(*) FROM jobs WHERE status IN ('succeeded','failed','cancelled')"
            ),
            raw_items=await self.scalar("SELECT count(*) FROM raw_apify_items"),
            second_worker_alive=int(second_alive),
        )


async def admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(db_engine.plain_dsn(dsn))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


# --- the end checks ----------------------------------------------------------------------


async def checks(db: Db, base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        sim_runs = {r["id"]: r for r in (await http.get("/_sim/runs")).json()["runs"]}
        stats = (await http.get("/_sim/stats")).json()
    runs = await db.rows(
        "SELECT r.id, r.job_id, r.source_connection_id, r.attempt, r.apify_run_id, "
        "r.dataset_id, r.status, r.raw_stored_at, "
        "(SELECT count(*) FROM raw_apify_items i WHERE i.apify_run_id = r.id) AS stored, "
        "(SELECT count(DISTINCT item_index) FROM raw_apify_items i "
        " WHERE i.apify_run_id = r.id) AS distinct_stored "
        "FROM apify_runs r"
    )
    recorded = [r.apify_run_id for r in runs if r.apify_run_id is not None]
    per_attempt = collections.Counter(
        (r.job_id, r.source_connection_id, r.attempt) for r in runs if r.apify_run_id
    )
    stored_runs = [r for r in runs if r.raw_stored_at is not None]
    lost = extra = 0
    for r in stored_runs:
        expected = sim_runs[r.apify_run_id]["itemCount"] if r.apify_run_id in sim_runs else 0
        lost += max(0, expected - r.stored)
        extra += max(0, r.stored - expected) + (r.stored - r.distinct_stored)
    datasets = collections.Counter(r.dataset_id for r in stored_runs if r.stored)
    jobs: dict[str, int] = {
        r.status: int(r.n)
        for r in await db.rows("SELECT status, count(*) AS n FROM jobs GROUP BY 1")
    }
    return {
        "jobs": jobs,
        "jobs_open": sum(n for s, n in jobs.items() if s not in TERMINAL),
        "simulator_starts": stats["starts"],
        "simulator_faults": sum(stats["faults"].values()),
        "runs_recorded": len(recorded),
        "orphan_runs": len(set(sim_runs) - set(recorded)),
        "runs_recorded_twice": len(recorded) - len(set(recorded)),
        "duplicate_runs_per_attempt": sum(1 for n in per_attempt.values() if n > 1),
        "runs_stored": len(stored_runs),
        "items_expected": sum(
            sim_runs[r.apify_run_id]["itemCount"] for r in stored_runs if r.apify_run_id in sim_runs
        ),
        "items_stored": sum(r.stored for r in stored_runs),
        "items_lost": lost,
        "items_duplicated": extra,
        "datasets_stored_twice": sum(1 for n in datasets.values() if n > 1),
    }


# --- outputs -----------------------------------------------------------------------------


def write_csv(path: Path, samples: list[Sample]) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow([field.name for field in fields(Sample)])
        out.writerows(astuple(s) for s in samples)


def plot(out: Path, samples: list[Sample], kills: list[float]) -> Path:
    minutes = [s.minute for s in samples]
    series = (
        ("RSS (MiB)", [s.rss_kib / 1024 for s in samples]),
        ("open file descriptors", [float(s.fds) for s in samples]),
        ("PostgreSQL connections", [float(s.pg_connections) for s in samples]),
        ("CPU (% of one core)", [s.cpu_percent for s in samples]),
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return plot_svg(out / "soak.svg", minutes, series, kills)
    fig, axes = pyplot.subplots(len(series), 1, figsize=(9, 9), sharex=True)
    for ax, (label, values) in zip(axes, series, strict=True):
        ax.plot(minutes, values, marker=".", linewidth=1)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0, top=max([*values, 1.0]) * 1.15)
        ax.grid(alpha=0.3)
        for at in kills:
            ax.axvline(at, color="red", alpha=0.25, linewidth=1)
    axes[-1].set_xlabel("minutes (red lines: a second worker killed with SIGKILL)")
    fig.suptitle("soak: the first worker, sampled")
    fig.tight_layout()
    path = out / "soak.png"
    fig.savefig(path, dpi=90)
    return path


def plot_svg(
    path: Path, minutes: list[float], series: Any, kills: list[float]
) -> Path:  # pragma: no cover - only without matplotlib
    width, height, pad = 800, 160, 40
    end = max([*minutes, 1.0])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height * 4}">']
    for row, (label, values) in enumerate(series):
        top = max([*values, 1.0]) * 1.15
        y0 = row * height
        pts = " ".join(
            f"{pad + m / end * (width - 2 * pad):.1f},"
            f"{y0 + height - pad / 2 - v / top * (height - pad):.1f}"
            for m, v in zip(minutes, values, strict=True)
        )
        parts.append(
            f'<text x="{pad}" y="{y0 + 14}" font-size="12">{label} (max {top / 1.15:.1f})</text>'
        )
        parts.append(f'<polyline fill="none" stroke="steelblue" points="{pts}"/>')
        for at in kills:
            x = pad + at / end * (width - 2 * pad)
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + 20}" '
                f'y2="{y0 + height - 20}" stroke="red" opacity="0.3"/>'
            )
    parts.append("</svg>")
    path.write_text("\n".join(parts))
    return path


# --- the soak ----------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> int:
    pg_port = make_url(args.dsn).port or 5432
    name = f"kairo_soak_{uuid.uuid4().hex[:8]}"
    url = make_url(args.dsn).set(database=name).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="kairo-soak-"))
    args.out.mkdir(parents=True, exist_ok=True)
    shown = ", ".join(f"{k}={v}" for k, v in worker_settings(args).items())
    print(f"worker settings (the rest are the service's defaults): {shown}", flush=True)
    print(
        f"load: {args.brands} brands x {args.sources} sources, forced refresh every "
        f"{args.wave_seconds:g} s; faults {args.faults:.0%}; second worker killed every "
        f"{args.kill_every_minutes:g} min; logs in {work}",
        flush=True,
    )
    await admin(args.dsn, f'CREATE DATABASE "{name}"')
    sim: subprocess.Popen[str] | None = None
    first: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    db: Db | None = None
    try:
        await migrate.upgrade(url)
        brands = await seed_sources(url, args)
        sim, base_url = start_simulator(args, work / "simulator.log")
        db = Db(url, pg_port, urllib.parse.urlsplit(base_url).port or 80)
        first = start_worker(url, base_url, args, PRIMARY_APP, work / "worker-first.log")
        pid = first.pid
        started = time.monotonic()
        end = started + args.minutes * 60
        samples: list[Sample] = []
        kills: list[float] = []
        busy_ticks = ticks = 0
        next_wave = started
        next_sample = started + args.sample_seconds
        next_second = started + args.kill_every_minutes * 60 / 2
        second_started = 0.0
        cpu_at, cpu_was = time.monotonic(), cpu_seconds(pid)

        async def take(now: float) -> None:
            nonlocal cpu_at, cpu_was
            cpu_now = cpu_seconds(pid)
            cpu = 100 * (cpu_now - cpu_was) / max(now - cpu_at, 1e-6)
            cpu_at, cpu_was = now, cpu_now
            assert db is not None
            s = await db.sample(pid, (now - started) / 60, cpu, second is not None)
            samples.append(s)
            print(
                f"min {s.minute:6.2f}  rss {s.rss_kib / 1024:7.1f} MiB  fds {s.fds:4d}  "
                f"pg {s.pg_connections:3d} (by name {s.pg_by_app_name:3d})  "
                f"sim sockets {s.simulator_sockets:3d}  "
                f"cpu {s.cpu_percent:5.1f}%  running {s.running_jobs:3d}  "
                f"ended {s.jobs_ended:6d}  raw {s.raw_items:8d}  "
                f"second {'up' if s.second_worker_alive else '-'}",
                flush=True,
            )

        while (now := time.monotonic()) < end:
            if first.poll() is not None:
                raise SystemExit(f"the first worker exited ({first.returncode}); see {work}")
            if now >= next_wave:
                await db.wave(brands)
                next_wave += args.wave_seconds
            if second is None and now >= next_second:
                second = start_worker(url, base_url, args, SECOND_APP, work / "worker-second.log")
                second_started = now
            elif second is not None:
                # Mid-work: once it holds jobs, --second-seconds (15) or more after its
                # start (its runs are in flight by then), it is killed with SIGKILL; at the
                # latest after 90 s.
                holds = await db.running_of(second.pid)
                age = now - second_started
                if (holds and age >= args.second_seconds) or age > 90:
                    second.send_signal(signal.SIGKILL)
                    second.wait()
                    kills.append(round((now - started) / 60, 2))
                    print(
                        f"min {(now - started) / 60:6.2f}  second worker killed with SIGKILL "
                        f"holding {holds} running job(s)",
                        flush=True,
                    )
                    second = None
                    next_second = now + args.kill_every_minutes * 60
            if now >= next_sample:
                await take(now)
                next_sample += args.sample_seconds
            ticks += 1
            busy_ticks += int(await db.running_of(pid) > 0)
            await asyncio.sleep(1.0)
        if second is not None:
            holds = await db.running_of(second.pid)
            second.send_signal(signal.SIGKILL)
            second.wait()
            kills.append(round((time.monotonic() - started) / 60, 2))
            print(
                f"min {kills[-1]:6.2f}  second worker killed with SIGKILL at the end of the "
                f"load, holding {holds} running job(s)",
                flush=True,
            )
            second = None
        loaded_minutes = (time.monotonic() - started) / 60
        print(f"load over after {loaded_minutes:.1f} min; draining", flush=True)
        drained_by = time.monotonic() + args.drain_seconds
        while await db.open_jobs() and time.monotonic() < drained_by:
            await asyncio.sleep(1.0)
        await take(time.monotonic())
        result = await checks(db, base_url)
    finally:
        if second is not None:
            second.kill()
            second.wait()
        if first is not None:
            stop(first)
        if sim is not None:
            stop(sim, grace=10)
        if db is not None:
            await db.engine.dispose()
        await admin(args.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    warm_at = min(args.warm_minutes, args.minutes / 10)
    warm = next((s for s in samples if s.minute >= warm_at), samples[0])
    final = samples[-1]
    ratio = final.rss_kib / warm.rss_kib
    write_csv(args.out / "samples.csv", samples)
    picture = plot(args.out, samples, kills)
    busy = busy_ticks / max(ticks, 1)
    print()
    print(f"duration: {loaded_minutes:.1f} min of load, then the drain")
    print(f"first worker busy (a job running): {busy:.0%} of the seconds polled")
    print(f"second workers killed with SIGKILL: {len(kills)} at minutes {kills}")
    print(f"jobs: {result['jobs']}; not ended: {result['jobs_open']}")
    print(
        f"simulator: {result['simulator_starts']} runs started, "
        f"{result['simulator_faults']} faults injected"
    )
    print(
        f"runs: {result['runs_recorded']} recorded; orphans {result['orphan_runs']}; "
        f"recorded twice {result['runs_recorded_twice']}; "
        f"duplicate runs per job/source/attempt: {result['duplicate_runs_per_attempt']}"
    )
    print(
        f"raw items: {result['items_stored']} stored of {result['items_expected']} in "
        f"{result['runs_stored']} stored datasets; lost {result['items_lost']}; "
        f"duplicated {result['items_duplicated']}; "
        f"datasets stored twice {result['datasets_stored_twice']}"
    )
    print(
        f"RSS: warm {warm.rss_kib / 1024:.1f} MiB (minute {warm.minute:g}), final "
        f"{final.rss_kib / 1024:.1f} MiB (minute {final.minute:g}); ratio {ratio:.3f} "
        f"(bound {args.rss_ratio_max:.2f})"
    )
    print(
        f"fds: warm {warm.fds}, final {final.fds}, max {max(s.fds for s in samples)}; "
        f"pg connections: warm {warm.pg_connections}, final {final.pg_connections}, "
        f"max {max(s.pg_connections for s in samples)}"
    )
    print(f"wrote {args.out / 'samples.csv'} and {picture}")
    failures = []
    if result["items_lost"] or result["items_duplicated"] or result["datasets_stored_twice"]:
        failures.append("raw items lost or stored twice")
    if (
        result["duplicate_runs_per_attempt"]
        or result["orphan_runs"]
        or result["runs_recorded_twice"]
    ):
        failures.append("a run paid twice (or not recorded)")
    if result["jobs_open"]:
        failures.append("jobs not ended")
    if ratio > args.rss_ratio_max:
        failures.append(f"final RSS {ratio:.3f} x warm")
    print("verdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(soak(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
