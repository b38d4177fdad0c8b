"""Long-polling vs fixed-interval polling against the Apify simulator.

M concurrent runs (default 2,000) last 5..120 simulated seconds; ``--time-factor`` scales
every duration (default 1.0: Apify's own timing, about 2.5 minutes per approach; 0.1 runs
10 times faster but also makes the client handle 10 times the request rate). Both approaches
are scaled alike, so their ratio is the one you would see against Apify:

- long-poll: our ``ApifyClient.wait_for_run``, ``waitForFinish`` up to 60 simulated s;
- baseline: the old loop, ``GET`` the run every 5 simulated seconds.

The simulator runs in its own process; each approach runs in a fresh child process so its
peak RSS is its own. For each approach it prints API requests per run-minute (simulated),
p50/p99 detection latency (run end, as the simulator recorded it, to our caller knowing),
and the client's peak RSS.

    python bench/poll_efficiency.py                 # 2,000 runs
    python bench/poll_efficiency.py --waits 5000    # 5,000 concurrent waits
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import time
from typing import Any

import httpx
import structlog

import machine_load  # bench/ is the script's directory
from kairo_ingest import clock
from kairo_ingest.apify import client as apify_client

TOKEN = "bench-token-0123456789"
ACTOR = "clockworks~tiktok-scraper"
START_CONCURRENCY = 200  # starts in flight at once


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waits", type=int, default=2000, help="concurrent runs (M)")
    parser.add_argument("--time-factor", type=float, default=1.0, help="1.0: Apify's timing")
    parser.add_argument("--duration-min", type=float, default=5.0, help="simulated seconds")
    parser.add_argument("--duration-max", type=float, default=120.0, help="simulated seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="baseline poll, simulated s")
    parser.add_argument(
        "--start-rate", type=float, default=100.0, help="starts per second (a worker paces them)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=("longpoll", "baseline"), default=None)
    parser.add_argument("--dump", default=None, help="write per-run latencies (JSON) here")
    parser.add_argument("--child", choices=("longpoll", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    return parser.parse_args()


# --------------------------------------------------------------------------- child side


async def run_child(args: argparse.Namespace) -> dict[str, Any]:
    # Measure the client, not console rendering: keep warnings and errors only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    factor = args.time_factor
    detected: dict[str, float] = {}
    failures = 0
    gate = asyncio.Semaphore(START_CONCURRENCY)
    long_poll_max = max(1, round(60 * factor))  # 60 simulated seconds, like Apify's cap
    interval = args.interval * factor

    async with apify_client.ApifyClient(
        args.base_url, TOKEN, long_poll_max_seconds=long_poll_max, min_poll_interval_seconds=0.0
    ) as api:

        async def one(i: int) -> None:
            nonlocal failures
            await asyncio.sleep(i / args.start_rate)
            async with gate:
                run = await api.start_run(ACTOR, {"profiles": [f"brand{i}"], "resultsPerPage": 5})
            try:
                if args.child == "longpoll":
                    await api.wait_for_run(run.id, clock.Deadline.after(3600))
                else:
                    while not (await api.get_run(run.id)).terminal:
                        await asyncio.sleep(interval)
            except Exception:
                failures += 1
                return
            detected[run.id] = time.time()

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(args.waits)))
        elapsed = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "detected": detected,
        "failures": failures,
        "elapsed_seconds": elapsed,
        "peak_rss_mb": peak_kb / 1024,
    }


# --------------------------------------------------------------------------- parent side


def start_simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "kairo_apify_sim",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--seed",
        str(args.seed),
        "--time-factor",
        str(args.time_factor),
        "--duration-min",
        str(args.duration_min),
        "--duration-max",
        str(args.duration_max),
        "--ready-seconds",
        "1",
        "--succeeded",
        "1",
        "--failed",
        "0",
        "--timed-out",
        "0",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)["base_url"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(args: argparse.Namespace, base_url: str, approach: str) -> dict[str, Any]:
    with httpx.Client(base_url=base_url) as http:
        http.post("/_sim/reset").raise_for_status()
        command = [sys.executable, __file__, "--child", approach, "--base-url", base_url]
        command += ["--waits", str(args.waits), "--time-factor", str(args.time_factor)]
        command += ["--interval", str(args.interval), "--start-rate", str(args.start_rate)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        stats = http.get("/_sim/stats").json()
        runs = http.get("/_sim/runs").json()["runs"]
    finished = {run["id"]: run for run in runs}
    per_run = [
        (finished[run_id]["finishedAtEpoch"], (seen - finished[run_id]["finishedAtEpoch"]) * 1000)
        for run_id, seen in result["detected"].items()
        if finished.get(run_id, {}).get("finishedAtEpoch")
    ]
    latencies = [latency for _, latency in per_run]
    if args.dump:
        with open(f"{args.dump}.{approach}.json", "w") as out:
            json.dump(sorted(per_run), out)
    run_minutes = sum(run["durationSeconds"] for run in runs) / 60  # simulated
    requests = stats["requests"]
    return {
        "approach": approach,
        "runs": len(runs),
        "resolved": len(result["detected"]),
        "failures": result["failures"],
        "requests_total": sum(requests.values()),
        "status_requests": requests.get("get_run", 0),
        "per_run_minute": sum(requests.values()) / run_minutes,
        "status_per_run_minute": requests.get("get_run", 0) / run_minutes,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "peak_rss_mb": result["peak_rss_mb"],
        "elapsed_seconds": result["elapsed_seconds"],
        "long_polls_peak": stats["longPolls"]["peak"],
    }


def report(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print(
        f"\nM={args.waits} runs, durations {args.duration_min:g}..{args.duration_max:g}"
        " simulated s,"
        f" time factor {args.time_factor:g}, baseline interval {args.interval:g} simulated s,"
        f" {args.start_rate:g} starts/s,"
        f" python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'approach':<10} {'resolved':>9} {'req/run-min':>12} {'status/run-min':>15}"
        f" {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'peak RSS MB':>12} {'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['approach']:<10} {row['resolved']:>5}/{row['runs']:<3} "
            f"{row['per_run_minute']:>12.2f} {row['status_per_run_minute']:>15.2f}"
            f" {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f}"
            f" {row['peak_rss_mb']:>12.1f} {row['elapsed_seconds']:>7.1f}"
        )
    print("peak concurrent long-polls (simulator):", rows[0]["long_polls_peak"])
    by_name = {row["approach"]: row for row in rows}
    if {"longpoll", "baseline"} <= set(by_name):
        lp, base = by_name["longpoll"], by_name["baseline"]
        print(
            f"\nbaseline / long-poll: {base['per_run_minute'] / lp['per_run_minute']:.1f}x requests"
            f" ({base['status_per_run_minute'] / lp['status_per_run_minute']:.1f}x status"
            f" requests), p99 latency {base['p99_ms'] / lp['p99_ms']:.1f}x,"
            f" RSS {base['peak_rss_mb'] / lp['peak_rss_mb']:.2f}x"
        )
    print(
        "latencies are real milliseconds; the baseline's grow with its interval, so at"
        f" Apify's real timing they are {1 / args.time_factor:g}x the figures above"
    )
    print(json.dumps(rows, indent=None))


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(asyncio.run(run_child(args))))
        return
    print(f"machine: {machine_load.line()}", flush=True)
    proc, base_url = start_simulator(args)
    try:
        approaches = [args.only] if args.only else ["longpoll", "baseline"]
        rows = [measure(args, base_url, approach) for approach in approaches]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report(args, rows)


if __name__ == "__main__":
    main()
