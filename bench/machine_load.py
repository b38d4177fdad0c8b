"""The machine a benchmark ran on, as its output states it: CPUs and load average.

Other work on the machine skews every figure (PostgreSQL, the simulator and the worker
share the cores), so each benchmark prints this line at its start and its end; see
docs/benchmarks.md.
"""

from __future__ import annotations

import os


def line() -> str:
    """``2 CPUs, load average 0.12 / 0.30 / 0.41 (1 / 5 / 15 min)``."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return f"{os.cpu_count()} CPUs, load average unknown"
    averages = f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
    return f"{os.cpu_count()} CPUs, load average {averages} (1 / 5 / 15 min)"
