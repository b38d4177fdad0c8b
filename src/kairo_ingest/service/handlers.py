"""Job kinds this service runs, bound to their dependencies: the worker's handler table."""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import Mapping

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config, secretbox
from kairo_ingest.apify import client as apify_client
from kairo_ingest.domain import statuses
from kairo_ingest.pipeline import budget, compile_job, tenants
from kairo_ingest.pipeline import deps as deps_module
from kairo_ingest.worker import context as worker_context


def pipeline_deps(
    settings: config.Settings, engine: sa_async.AsyncEngine, apify: apify_client.ApifyClient
) -> deps_module.Deps:
    return deps_module.Deps(
        engine=engine,
        apify=apify,
        caps=settings.caps_by_pair,
        features=settings.enabled_features,
        disabled_capabilities=settings.disabled_capability_set,
        freshness_ttl=settings.freshness_ttl,
        run_deadline_seconds=settings.run_deadline_seconds,
        source_concurrency=settings.source_concurrency,
        run_slots=asyncio.Semaphore(settings.apify_max_concurrent_runs),
        lease_seconds=settings.lease_seconds,
        tenants=make_tenants(settings, engine, apify),
        budget=budget.Budget(
            engine,
            memory_mbytes=settings.apify_run_memory_mbytes,
            poll_seconds=budget_poll_seconds(settings),
            window_seconds=settings.budget_window_seconds,
        ),
        run_max_charge_usd=settings.apify_run_max_charge_usd,
    )


def budget_poll_seconds(settings: config.Settings) -> float:
    """With LISTEN, polling is only the fallback for a lost notification; without it
    (a transaction-mode pooler), polling is how a waiter learns of a freed slot."""
    if settings.listen_notify:  # off behind a transaction-mode pooler (config.Settings)
        return settings.budget_poll_seconds
    return min(settings.budget_poll_seconds, 1.0)


def default_limits(settings: config.Settings) -> tenants.Limits:
    cap = settings.apify_account_daily_cap_usd
    return tenants.Limits(
        max_concurrent_runs=settings.apify_account_max_concurrent_runs,
        max_memory_mbytes=settings.apify_account_max_memory_mbytes,
        daily_cap_usd=None if cap is None else decimal.Decimal(str(cap)),
    )


def make_tenants(
    settings: config.Settings, engine: sa_async.AsyncEngine, apify: apify_client.ApifyClient
) -> tenants.Tenants:
    """Accounts: the service's client is `default`'s; a named account gets a client of its
    own on the same base URL (the simulator's in tests and demos), built on first use."""
    key = settings.secret_key
    return tenants.Tenants(
        engine,
        default_api=apify,
        default_limits=default_limits(settings),
        box=secretbox.SecretBox(key.get_secret_value()) if key is not None else None,
        factory=lambda token: apify_client.ApifyClient(apify.base_url, token),
    )


def compile_handler(d: deps_module.Deps) -> worker_context.Handler:
    async def handle(ctx: worker_context.JobContext) -> worker_context.Outcome:
        result = await compile_job.run(d, ctx.lease)
        return worker_context.Outcome(evidence_status=result.evidence_status, error=result.error)

    return handle


def table(d: deps_module.Deps) -> Mapping[str, worker_context.Handler]:
    return {statuses.JobKind.COMPILE: compile_handler(d)}
