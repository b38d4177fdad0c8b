"""Built-in job kinds that need no dependencies: ``noop`` for tests and benchmarks."""

from __future__ import annotations

from kairo_ingest.worker import context

NOOP_KIND = "noop"


async def noop(ctx: context.JobContext) -> context.Outcome:
    """Succeed at once, storing nothing: measures the queue alone."""
    return context.Outcome()


HANDLERS: dict[str, context.Handler] = {NOOP_KIND: noop}
