"""The autoscaler's query is the one the code answers: the ScaledObject carries
queue/sql.py's AUTOSCALER_DEMAND character for character, and run against a database it
gives what the worker's gauges say (ready + running compile jobs, deferred ones left out)."""

from __future__ import annotations

import pathlib

import sqlalchemy as sa
import yaml
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import metrics
from kairo_ingest.queue import endings, jobs, sql
from kairo_ingest.worker import maintenance
from support import outcomes

SCALED_OBJECT = (
    pathlib.Path(__file__).resolve().parents[3]
    / "deploy"
    / "kubernetes"
    / "base"
    / "worker-scaledobject.yaml"
)


def _manifest_query() -> str:
    docs = list(yaml.safe_load_all(SCALED_OBJECT.read_text(encoding="utf-8")))
    scaled = outcomes.only([d for d in docs if d["kind"] == "ScaledObject"])
    trigger = outcomes.only(scaled["spec"]["triggers"])
    return str(trigger["metadata"]["query"])


def test_the_scaled_object_runs_the_query_the_code_defines() -> None:
    assert _manifest_query() == sql.AUTOSCALER_DEMAND


async def test_the_scaler_query_answers_what_the_gauges_say(engine: sa_async.AsyncEngine) -> None:
    await jobs.enqueue_many(engine, kind="compile", count=9)
    await jobs.enqueue_many(engine, kind="digest", count=4)  # another kind: not counted
    await jobs.claim(engine, owner="w", limit=3, lease_seconds=60, kinds=["compile"])
    async with engine.begin() as conn:  # two wait on a backoff: not ready yet
        await conn.execute(
            sa.text(
                "UPDATE jobs SET available_at = now() + interval '10 minutes' WHERE id IN ("
                " SELECT id FROM jobs WHERE kind = 'compile' AND status = 'pending' LIMIT 2)"
            )
        )
    done = await jobs.claim(engine, owner="w", limit=1, lease_seconds=60, kinds=["compile"])
    await endings.complete(engine, done[0])  # finished: not counted

    await maintenance.Sampler(engine)()
    async with engine.connect() as conn:
        demand = await conn.scalar(sa.text(_manifest_query()))

    ready = metrics.REGISTRY.get_sample_value("kairo_queue_ready_jobs", {"kind": "compile"})
    running = metrics.REGISTRY.get_sample_value("kairo_queue_running_jobs", {"kind": "compile"})
    # 9 compile jobs: 3 running, 2 deferred, 1 finished, 3 ready.
    assert (ready, running) == (3, 3)
    assert demand == ready + running
