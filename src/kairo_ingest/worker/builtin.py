"""Built-in job kinds that need no dependencies: ``noop`` for tests and benchmarks."""

from __future__ import annotations

from kairo_ingest.worker import runner

NOOP_KIND = "noop"


async def noop(ctx: runner.JobContext) -> runner.Outcome:
    """Succeed at once, storing nothing: measures the queue alone."""
    return runner.Outcome()


HANDLERS: dict[str, runner.Handler] = {NOOP_KIND: noop}
