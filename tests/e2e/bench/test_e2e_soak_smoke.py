"""The soak at a toy length: it must keep running, checking and drawing as the code changes.

Half a minute of load with a sample every 5 s and second workers killed with SIGKILL; the
figures are the soak's own business (docs/soak.md), this checks that it completes, passes
its own checks and writes its CSV and plot.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
pytestmark = pytest.mark.slow


def test_soak_runs_checks_and_draws(pg_server_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "soak.py"),
            *("--dsn", pg_server_url, "--out", str(tmp_path)),
            *("--minutes", "0.5", "--sample-seconds", "5"),
            *("--kill-every-minutes", "0.2", "--second-seconds", "2"),
            *("--brands", "6", "--wave-seconds", "5", "--items", "10"),
            # A toy run is too short for its RSS to settle; the bound is the real soak's.
            *("--rss-ratio-max", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "verdict: PASS" in out
    assert "second worker killed with SIGKILL" in out
    assert "duplicate runs per job/source/attempt: 0" in out
    assert "lost 0; duplicated 0" in out
    with (tmp_path / "samples.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 5
    assert all(int(r["rss_kib"]) > 0 and int(r["pg_connections"]) > 0 for r in rows)
    assert (tmp_path / "soak.png").stat().st_size > 0
