"""The ``noop`` job kind: succeeds at once and stores nothing, so it measures the queue
alone. Test and benchmark tooling: the product's worker does not register it."""

from __future__ import annotations

from kairo_ingest.worker import context

NOOP_KIND = "noop"


async def noop(ctx: context.JobContext) -> context.Outcome:
    """Succeed at once, storing nothing."""
    return context.Outcome()


HANDLERS: dict[str, context.Handler] = {NOOP_KIND: noop}
