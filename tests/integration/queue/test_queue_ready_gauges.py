"""The per-kind gauges the autoscaler reads: ready jobs (deferred ones left out) and
running jobs, from one sampler round."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import metrics
from kairo_ingest.queue import endings, jobs
from kairo_ingest.worker import maintenance


def _gauge(name: str, kind: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"kind": kind})


async def _defer(engine: sa_async.AsyncEngine, kind: str, count: int) -> None:
    """Push ``count`` pending jobs of ``kind`` an hour into the future (a backoff)."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE jobs SET available_at = now() + interval '1 hour' WHERE id IN ("
                " SELECT id FROM jobs WHERE kind = :kind AND status = 'pending'"
                " AND available_at <= now() LIMIT :count)"
            ),
            {"kind": kind, "count": count},
        )


async def test_the_sampler_counts_ready_and_running_jobs_per_kind_and_leaves_deferred_out(
    engine: sa_async.AsyncEngine,
) -> None:
    await jobs.enqueue_many(engine, kind="compile", count=7)
    await jobs.enqueue_many(engine, kind="digest", count=3)
    await jobs.claim(engine, owner="w", limit=2, lease_seconds=60, kinds=["compile"])
    await _defer(engine, "compile", 1)
    finished = await jobs.claim(engine, owner="w", limit=1, lease_seconds=60, kinds=["digest"])
    await endings.complete(engine, finished[0], evidence_status=None)

    await maintenance.Sampler(engine)()

    # compile: 7 = 2 running + 1 deferred + 4 ready; digest: 3 = 1 finished + 2 ready.
    assert _gauge("kairo_queue_ready_jobs", "compile") == 4
    assert _gauge("kairo_queue_running_jobs", "compile") == 2
    assert _gauge("kairo_queue_ready_jobs", "digest") == 2
    assert _gauge("kairo_queue_running_jobs", "digest") == 0


async def test_a_kind_whose_jobs_are_gone_reads_zero_instead_of_its_last_value(
    engine: sa_async.AsyncEngine,
) -> None:
    await jobs.enqueue_many(engine, kind="ephemeral", count=2)
    sampler = maintenance.Sampler(engine)
    await sampler()
    assert _gauge("kairo_queue_ready_jobs", "ephemeral") == 2

    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM jobs WHERE kind = 'ephemeral'"))
    await sampler()

    assert _gauge("kairo_queue_ready_jobs", "ephemeral") == 0
    assert _gauge("kairo_queue_ready_jobs", "compile") == 0  # its series always exists
