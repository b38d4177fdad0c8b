"""bench/liveness.py at a toy size: it must keep running as the code changes (the figures
come from running it at full size; see docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "liveness.py"
pytestmark = pytest.mark.slow


def test_liveness_benchmark_runs_and_keeps_every_lease(pg_server_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--dsn",
            pg_server_url,
            *("--jobs", "2", "--sources", "3", "--items", "300", "--page-items", "100"),
            *("--hold-seconds", "0.05", "--lease-seconds", "3"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "leases lost             0" in done.stdout
    assert "succeeded on attempt 1  2 of 2" in done.stdout
