"""Where a drain's CPU went: this process, and the PostgreSQL server's processes.

On a 2-core machine the worker and the database share the cores, so a queue's throughput
is bounded by the CPU both spend per job. :class:`Drain` measures one drain's wall time,
this process's CPU time, and the server's (every ``postgres`` process on this host, from
``/proc``: the live ones' own time plus what the postmaster collected from backends that
exited). The server figure counts every database on that server, so take it on a quiet
machine; it is ``None`` where ``/proc`` is not readable or the server is not local.

Every drain measured in this process is appended to :data:`RECORDED`, so a benchmark
can read the split of a drain that a shared helper timed.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from types import TracebackType


@dataclasses.dataclass(frozen=True)
class Split:
    seconds: float
    process_cpu_seconds: float
    server_cpu_seconds: float | None
    claim_wait_seconds: float | None = None  # ours: the claim loop's wait on its statements

    def per_job_us(self, jobs: int) -> tuple[float, float | None]:
        """(this process, the server) CPU microseconds per job."""
        server = None if self.server_cpu_seconds is None else self.server_cpu_seconds / jobs * 1e6
        return self.process_cpu_seconds / jobs * 1e6, server


RECORDED: list[Split] = []


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _server_cpu() -> float | None:
    """CPU seconds of every postgres process on this host, reaped children included."""
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    total = 0
    seen = False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if not name.startswith("postgres"):
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime (fields 14-17 of proc(5))
        total += sum(int(v) for v in fields[11:15])
        seen = True
    return total / ticks if seen else None


class Drain:
    """``with Drain() as d: ...``; then ``d.split`` (also appended to :data:`RECORDED`)."""

    def __enter__(self) -> Drain:
        self._server = _server_cpu()
        self._process = _process_cpu()
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self._started
        process = _process_cpu() - self._process
        server_now = _server_cpu()
        server = None if server_now is None or self._server is None else server_now - self._server
        self.split = Split(seconds, process, server)
        RECORDED.append(self.split)

    @property
    def seconds(self) -> float:
        return self.split.seconds
