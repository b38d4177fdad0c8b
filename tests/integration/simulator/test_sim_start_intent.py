"""Issue 8: an error while starting or reconciling keeps the intent STARTING.

Old: ``_start`` in pipeline/source_run.py kept STARTING only for
``ApifyStartUnknownError``; any other error (a 5xx or 403 on the list call while
reconciling, a start request that never got an answer) marked the intent START_FAILED,
and the next attempt wrote a new intent and started a second run although one may exist.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import server as sim_server
from kairo_ingest import errors
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import runs, sources, tables
from kairo_ingest.domain import registry
from kairo_ingest.pipeline import compile_job
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes

R = tables.apify_runs


async def _no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def _deps(engine: sa_async.AsyncEngine, api: apify_client.ApifyClient) -> deps_module.Deps:
    return deps_module.Deps(
        engine=engine,
        apify=api,
        disabled_capabilities=frozenset(),
        freshness_ttl=dt.timedelta(hours=24),
        run_deadline_seconds=30.0,
        source_concurrency=4,
        run_slots=asyncio.Semaphore(10),
    )


async def _leased_intent(engine: sa_async.AsyncEngine) -> tuple[queue_jobs.Lease, runs.Run]:
    brand = uuid.uuid4()
    source, _ = await sources.add(
        engine, brand_id=brand, platform="tiktok", capability="profile_videos", identifier="@acme"
    )
    await queue_jobs.enqueue(
        engine, kind="compile", brand_id=brand, params={"force_refresh": True}, max_attempts=3
    )
    lease = outcomes.only(await queue_jobs.claim(engine, owner="test", limit=1, lease_seconds=60))
    spec = registry.get_spec(source.platform, source.capability)
    async with engine.begin() as conn:
        intent = await runs.create_intent(
            conn,
            job_id=lease.job_id,
            source_id=source.id,
            brand_id=source.brand_id,
            actor_id=spec.actor_id,
            run_input=spec.build_input(source.identifier, source.settings, spec.default_cap),
            item_cap=spec.default_cap,
            attempt=1,
        )
        # A crash after the start was sent: the pipeline commits sent_at before sending.
        intent = await runs.mark_sent(conn, intent.id)
    return lease, intent


async def _statuses(engine: sa_async.AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return [row.status for row in (await conn.execute(sa.select(R.c.status))).all()]


@pytest.mark.parametrize("fault", ["error_500", "auth_401"])
async def test_an_error_while_reconciling_keeps_the_intent_starting(
    engine: sa_async.AsyncEngine, fault: str
) -> None:
    lease, _ = await _leased_intent(engine)  # a crash left it STARTING: it is resumed
    cfg = sim_config.SimConfig(faults={"list_runs": sim_config.FaultConfig(error_500=1.0)})
    async with sim_server.running(cfg) as sim:
        if fault == "auth_401":
            sim.state.apply_config({"faults": None, "expected_token": "another-token"})
        async with apify_client.ApifyClient(
            sim.base_url, "test-token", backoff_base_seconds=0.0, sleep=_no_sleep
        ) as api:
            result = await compile_job.run(_deps(engine, api), lease)
        assert sim.stats()["starts"] == 0
    assert await _statuses(engine) == ["STARTING"]
    assert len(result.evidence_status["failed"]) == 1


async def test_a_start_that_got_no_answer_keeps_the_intent_starting(
    engine: sa_async.AsyncEngine,
) -> None:
    lease, intent = await _leased_intent(engine)
    async with engine.begin() as conn:  # a fresh attempt: drop the intent, let the job make it
        await conn.execute(sa.delete(R).where(R.c.id == intent.id))
    async with apify_client.ApifyClient(
        "http://127.0.0.1:9", "test-token", backoff_base_seconds=0.0, sleep=_no_sleep
    ) as api:  # nothing listens on the discard port: the request never gets an answer
        result = await compile_job.run(_deps(engine, api), lease)
    assert await _statuses(engine) == ["STARTING"]
    assert len(result.evidence_status["failed"]) == 1


async def test_a_resumed_intent_waits_for_a_run_created_late_instead_of_starting_another(
    engine: sa_async.AsyncEngine,
) -> None:
    """Old: a resumed STARTING intent looked at the list once; a run whose start answer was
    lost just before the crash, created or listed a few seconds late, was missed and a
    second run was started."""
    lease, intent = await _leased_intent(engine)
    cfg = sim_config.SimConfig(
        time_factor=0.01,
        outcome_weights={"SUCCEEDED": 1.0},
        visibility_lag_seconds=0.5,
        late_creation_seconds=1.5,
        input_defaults=True,
        faults={"start": sim_config.FaultConfig(drop=1.0)},
    )
    async with (
        sim_server.running(cfg) as sim,
        apify_client.ApifyClient(sim.base_url, "test-token") as api,
    ):
        with pytest.raises(errors.ApifyStartUnknownError):  # the answer is lost, then "crash"
            await api.start_run(intent.actor_id, intent.input, max_items=intent.item_cap)
        sim.state.apply_config({"faults": None})
        result = await compile_job.run(_deps(engine, api), lease)  # the takeover resumes
        assert sim.stats()["starts"] == 1
        assert sim.stats()["lateStarts"] == 1
    assert result.evidence_status["failed"] == []
    async with engine.connect() as conn:
        row = outcomes.only((await conn.execute(sa.select(R))).all())
    assert row.apify_run_id is not None
