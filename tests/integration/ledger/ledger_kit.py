"""Shared set-up for the run ledger's tests: accounts, jobs whose runs outlive them, and
the ledger service, against the simulator in this loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_apify_sim import server as sim_server
from kairo_ingest import secretbox
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import accounts, runs, sources, tables
from kairo_ingest.domain import registry
from kairo_ingest.pipeline import budget, compile_job, ledger, tenants
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.queue import endings
from kairo_ingest.queue import jobs as queue_jobs
from support import outcomes

DEFAULT_TOKEN = "apify_api_defaultDEFAULTdefault0001"
TOKEN_A = "apify_api_tenantAAAAAAAAAAAAAAAAAA0001"
TOKEN_B = "apify_api_tenantBBBBBBBBBBBBBBBBBB0002"
KEY = secretbox.generate_key()
R = tables.apify_runs

# Runs of 4 real seconds (80 simulated at 0.05): long enough to cancel a job mid-run.
LONG_RUNS: dict[str, Any] = {
    "seed": 17,
    "time_factor": 0.05,
    "ready_seconds": 1,
    "duration_min_seconds": 80,
    "duration_max_seconds": 80,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "accepted_tokens": [DEFAULT_TOKEN, TOKEN_A, TOKEN_B],
}

TIKTOK = [("tiktok", "profile_videos", "@acme")]
BOUND_SECONDS = 30.0  # generous: a wait this long has hung


def client(base_url: str, token: str) -> apify_client.ApifyClient:
    return apify_client.ApifyClient(
        base_url, token, backoff_base_seconds=0.01, backoff_cap_seconds=0.05
    )


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, what: str, bound: float = BOUND_SECONDS
) -> None:
    try:
        async with asyncio.timeout(bound):
            while not await condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {bound:.0f}s: {what}") from None


@dataclasses.dataclass
class LedgerKit:
    engine: sa_async.AsyncEngine
    sim: sim_server.RunningSimulator
    apify: apify_client.ApifyClient
    box: secretbox.SecretBox
    tenants: tenants.Tenants

    def deps(self, **overrides: Any) -> deps_module.Deps:
        values: dict[str, Any] = {
            "engine": self.engine,
            "apify": self.apify,
            "disabled_capabilities": frozenset(),
            "freshness_ttl": dt.timedelta(hours=24),
            "run_deadline_seconds": 600.0,  # Apify's timeout: 30 real seconds at 0.05
            "source_concurrency": 8,
            "run_slots": asyncio.Semaphore(50),
            "tenants": self.tenants,
            "budget": budget.Budget(self.engine, poll_seconds=0.05),
        }
        values.update(overrides)
        return deps_module.Deps(**values)

    def ledger(self, *, settle_seconds: float | None = None, **overrides: Any) -> ledger.Ledger:
        extra = {} if settle_seconds is None else {"settle_seconds": settle_seconds}
        return ledger.Ledger(self.deps(**overrides), interval_seconds=0.05, **extra)

    async def account(self, name: str, token: str, **limits: Any) -> accounts.Account:
        return await accounts.add(
            self.engine,
            name=name,
            token_ciphertext=self.box.encrypt(token),
            fingerprint=self.box.fingerprint(token),
            max_concurrent_runs=limits.get("max_concurrent_runs"),
            max_memory_mbytes=limits.get("max_memory_mbytes"),
            daily_cap_usd=limits.get("daily_cap_usd"),
        )

    async def brand(
        self,
        account: str | None = None,
        pairs: list[tuple[str, str, str]] | None = None,
        *,
        brand: uuid.UUID | None = None,
    ) -> tuple[uuid.UUID, list[sources.Source]]:
        brand = brand or uuid.uuid4()
        added = []
        for platform, capability, identifier in pairs or TIKTOK:
            source, _ = await sources.add(
                self.engine,
                brand_id=brand,
                platform=platform,
                capability=capability,
                identifier=identifier,
                account=account,
            )
            added.append(source)
        return brand, added

    async def lease(
        self, brand: uuid.UUID, *, force_refresh: bool = True, max_attempts: int = 3
    ) -> queue_jobs.Lease:
        await queue_jobs.enqueue(
            self.engine,
            kind="compile",
            brand_id=brand,
            params={"force_refresh": force_refresh},
            max_attempts=max_attempts,
        )
        return await self.claim()

    async def claim(self) -> queue_jobs.Lease:
        leases = await queue_jobs.claim(self.engine, owner="test", limit=1, lease_seconds=60)
        assert len(leases) == 1
        return leases[0]

    async def running_job(
        self, brand: uuid.UUID, deps: deps_module.Deps | None = None, **lease: Any
    ) -> tuple[asyncio.Task[compile_job.Result], queue_jobs.Lease, runs.Run]:
        """A compile job whose run is RUNNING on Apify: its task, its lease and the run."""
        held = await self.lease(brand, **lease)
        task = asyncio.create_task(compile_job.run(deps or self.deps(), held))

        async def running() -> bool:
            rows = await self.rows(R.c.job_id == held.job_id, R.c.apify_run_id.is_not(None))
            return bool(rows) and self.sim_run(rows[0].apify_run_id)["status"] == "RUNNING"

        await eventually(running, what="the job's run is RUNNING on Apify")
        run = (await self.runs(R.c.job_id == held.job_id, R.c.apify_run_id.is_not(None)))[0]
        return task, held, run

    async def complete(self, lease: queue_jobs.Lease, result: compile_job.Result) -> None:
        """The worker's final write of a job that ran to its end."""
        await endings.complete_many(self.engine, [(lease, result.evidence_status)])

    async def reclaim(self, lease: queue_jobs.Lease) -> queue_jobs.Lease:
        """What a takeover after a crash looks like: the lease ends, the job is claimed again."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(tables.jobs)
                .where(tables.jobs.c.id == lease.job_id)
                .values(status="pending", lease_token=None, lease_expires_at=None, lease_owner=None)
            )
        return await self.claim()

    async def crash(self, task: asyncio.Task[Any]) -> None:
        """The worker that ran the job dies (or its heartbeat missed: the handler stops)."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def cancel_and_stop(self, lease: queue_jobs.Lease) -> None:
        """An operator cancels the running job, and its holder stops at its next heartbeat
        (it ends the job ``cancelled``)."""
        await queue_jobs.cancel(self.engine, lease.job_id)
        assert await endings.stop_cancelled(self.engine, [lease]) == 1

    async def expire(self, lease: queue_jobs.Lease) -> None:
        """The job's lease runs out (its worker was killed)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(tables.jobs)
                .where(tables.jobs.c.id == lease.job_id)
                .values(lease_expires_at=sa.text("now() - interval '1 second'"))
            )

    async def intent(
        self, lease: queue_jobs.Lease, source: sources.Source, *, sent: bool, **values: Any
    ) -> runs.Run:
        """The intent a crash left STARTING: sent to Apify or not."""
        spec = registry.get_spec(source.platform, source.capability)
        cap = registry.cap_for(source.platform, source.capability, {})
        async with self.engine.begin() as conn:
            run = await runs.create_intent(
                conn,
                job_id=lease.job_id,
                source_id=source.id,
                brand_id=source.brand_id,
                actor_id=spec.actor_id,
                run_input=spec.build_input(source.identifier, source.settings, cap),
                item_cap=cap,
                attempt=1,
                account=source.account or "default",
            )
            if sent:
                run = await runs.mark_sent(conn, run.id)
            if values:
                run = await runs.update(conn, run.id, **values)
        return run

    async def runs(self, *where: Any) -> list[runs.Run]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(R).where(*where).order_by(R.c.created_at))).all()
        return [
            runs.Run(**{f.name: r._mapping[f.name] for f in dataclasses.fields(runs.Run)})
            for r in rows
        ]

    async def rows(self, *where: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(R).where(*where))).all())

    async def slots(self) -> int:
        async with self.engine.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT count(*) FROM run_slots")) or 0)

    def sim_run(self, apify_run_id: str | None) -> dict[str, Any]:
        return outcomes.only([s for s in self.sim.state.run_summaries() if s["id"] == apify_run_id])

    def live_on_apify(self) -> list[dict[str, Any]]:
        live = ("READY", "RUNNING", "TIMING-OUT", "ABORTING")
        return [s for s in self.sim.state.run_summaries() if s["status"] in live]
