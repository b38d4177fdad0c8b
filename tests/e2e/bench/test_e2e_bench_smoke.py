"""The benchmarks at toy sizes: they must keep running as the code changes.

These check that each benchmark completes and prints its comparison, not any figure:
performance is measured by running the benchmarks themselves (see docs/benchmarks.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
pytestmark = pytest.mark.slow


def _bench(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_queue_benchmark_runs(pg_server_url: str) -> None:
    out = _bench(
        "queue_throughput.py",
        "--dsn",
        pg_server_url,
        "--jobs",
        "300",
        "--concurrency",
        "20",
        "--latency-samples",
        "5",
        "--rounds",
        "1",
        "--ours-pools",
        "12+0,4+2",
    )
    assert "load average" in out  # the machine, with the settings
    assert "ours/ours_pool4_2" in out  # another engine shape, same rounds
    assert "ours/pgqueuer" in out
    assert "ours/procrastinate" in out
    assert "pickup latency" in out
    assert "every finished job pruned inside the timed drain" in out  # the settings, first
    assert "its recommended autovacuum" in out


def test_queue_growth_benchmark_runs(pg_server_url: str) -> None:
    out = _bench(
        "queue_growth.py",
        *("--dsn", pg_server_url, "--finished", "2000", "--waiting", "200"),
        *("--samples", "5", "--drain-minutes", "0.05", "--settle-seconds", "0.2"),
    )
    assert "claim_idle" in out
    assert "hot_share" in out
    assert "ix_jobs_claimable" in out


def test_queue_sweep_runs(pg_server_url: str) -> None:
    out = _bench("queue_sweep.py", "--dsn", pg_server_url, "--jobs", "200", "--concurrency", "50")
    assert "ours / best peer" in out
    assert "| 50 |" in out
    # pgqueuer at its best: both drivers, every batch its rule allows, as many rounds.
    for driver in ("one connection", "pool of 40"):
        for batch in (10, 20, 25):
            assert f"pgqueuer {driver}, batch {batch} " in out
    assert "every finished job pruned inside the timed drain" in out
    assert "a ceiling, not a comparison" in out


def test_pgqueuer_gets_every_batch_size_its_rule_allows() -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import queue_throughput
    finally:
        sys.path.remove(str(BENCH))
    assert queue_throughput.pgqueuer_batches(50) == [10, 20, 25]
    assert queue_throughput.pgqueuer_batches(200) == [10, 20, 25, 50, 100]
    assert queue_throughput.pgqueuer_batches(800) == [10, 20, 25, 50, 100, 200, 250, 400]
    drivers = {k["driver"] for _, k in queue_throughput.pgqueuer_settings(800)}
    assert drivers == {"connection", "pool"}


def test_compile_cost_benchmark_runs(pg_server_url: str) -> None:
    out = _bench("compile_cost.py", "--dsn", pg_server_url, "--jobs", "100", "--concurrency", "10")
    assert "one source, refreshed, one page" in out
    assert "one source of a named account, refreshed" in out
    assert "run budget on" in out
    assert "tenants on" in out
    assert "empty compile / no-op" in out
    assert "| one source, refreshed, one page, budget and tenants off |" in out


def test_pipeline_benchmark_runs(pg_server_url: str) -> None:
    out = _bench(
        "pipeline_throughput.py",
        *("--dsn", pg_server_url, "--brands", "3", "--workers", "1,2", "--without-budget"),
    )
    assert "round trips per source" in out
    assert "| 2 |" in out
    assert "run budget on" in out
    assert "tenants on (2 named account(s)" in out
    assert "| 2, budget and tenants off (a ceiling) |" in out


def test_ingest_benchmark_runs(pg_server_url: str) -> None:
    out = _bench(
        "ingest_throughput.py",
        "--dsn",
        pg_server_url,
        "--items",
        "400",
        "--small",
        "0",
        "--page-size",
        "100",
        "--old-normalize-items",
        "50",
    )
    assert "normalization ours/old" in out
    assert "COPY/ours" in out


def test_poll_benchmark_runs() -> None:
    out = _bench(
        "poll_efficiency.py",
        "--waits",
        "20",
        "--time-factor",
        "0.02",
        "--duration-min",
        "5",
        "--duration-max",
        "10",
        "--start-rate",
        "50",
    )
    assert "baseline / long-poll" in out


def test_loop_lag_benchmark_runs(pg_server_url: str) -> None:
    out = _bench(
        "loop_lag.py", "--dsn", pg_server_url, "--items", "60", "--page-size", "25", "--rounds", "1"
    )
    assert "inline/ours: lag p99" in out


def test_budget_benchmark_runs(pg_server_url: str) -> None:
    """Three workers share one account's budget; one is killed with SIGKILL mid-way."""
    out = _bench(
        "budget.py",
        "--dsn",
        pg_server_url,
        "--brands",
        "6",
        "--sources",
        "2",
        "--limit",
        "3",
        "--run-seconds",
        "0.5",
        "--concurrency",
        "10",
        "--lease-seconds",
        "4",
    )
    assert "max concurrent runs" in out
    assert "worker settings (the rest are the service's defaults): " in out
    assert "worker timings: lease 4 s (service: 60 s), reap interval 1 s (service: 10 s)" in out
    assert "(leaked): 0" in out
    assert "run_slots rows written: " in out
    assert "wall time" in out


def test_simulator_routing_benchmark_runs() -> None:
    out = _bench("sim_routing.py", "--requests", "50", "--rounds", "1", "--pairs", "1")
    assert out.startswith("settings: GET /v2/actor-runs/{id} x 50")  # the settings, first
    assert "floor " in out
    assert "simulator " in out
    assert "simulator/floor: wall req/s" in out
