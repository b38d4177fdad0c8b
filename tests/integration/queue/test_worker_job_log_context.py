"""Every line a handler logs names its job, bound once per job.

The worker binds the job's context with ``logs.bind_task`` (one contextvar set, rendered
only when a line is logged) instead of structlog's per-key contextvars; the lines must
still carry job_id, kind and attempt, in tasks the handler starts too, and nothing of a
job may leak into the worker's own lines.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import queue_testkit
import structlog

from kairo_ingest import logs
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.worker import context


async def test_a_handlers_lines_name_its_job(
    make_worker: queue_testkit.WorkerFactory, engine: object, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = structlog.get_config()
    logs.configure(level="INFO", json_format=True)  # prints to capsys's stderr
    try:
        await _run_and_check(make_worker, engine, capsys)
    finally:
        structlog.configure(**saved)


async def _run_and_check(
    make_worker: queue_testkit.WorkerFactory, engine: object, capsys: pytest.CaptureFixture[str]
) -> None:
    log = logs.get("test.handler")

    async def handler(ctx: context.JobContext) -> context.Outcome:
        log.info("in_handler")

        async def child() -> None:
            log.info("in_child_task")

        await asyncio.create_task(child())
        return context.Outcome()

    job, _ = await queue_jobs.enqueue(engine, kind="logged", brand_id=None)  # type: ignore[arg-type]
    job_id = job.id
    worker = make_worker({"logged": handler})
    await worker.run(drain=True)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    by_event = {line["event"]: line for line in lines}
    for event in ("in_handler", "in_child_task"):
        line = by_event[event]
        assert line.get("job_id") == str(job_id)
        assert line.get("kind") == "logged"
        assert line.get("attempt") == "1"
        assert "brand_id" not in line  # None values are left out
    assert "job_id" not in by_event["worker_stopped"]
    assert isinstance(uuid.UUID(by_event["in_handler"]["job_id"]), uuid.UUID)
