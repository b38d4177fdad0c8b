"""The console benchmark at toy size: it must keep running as the pages change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "console_pages.py"
pytestmark = pytest.mark.slow


def test_console_benchmark_runs(pg_server_url: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--dsn",
            pg_server_url,
            "--jobs",
            "3000",
            "--runs",
            "600",
            "--reps",
            "2",
            "--warm",
            "1",
            "--baseline-reps",
            "1",
            "--drain-jobs",
            "200",
            "--drain-rounds",
            "1",
            "--n-clients",
            "3",
            "--refresh-seconds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "slowest page p95" in done.stdout
    assert "drain rate, median of 1" in done.stdout
    for page in (
        "overview",
        "jobs, middle page",
        "jobs, error words",
        "job page",
        "runs, platform",
        "brands, handle",
        "spend",
        "audit",
        "workers",
        "ledger",
        "bulk retry preview",
    ):
        assert page in done.stdout
