"""What the pipeline needs from the outside, gathered once by the composition root."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Mapping

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock
from kairo_ingest.apify import ports as apify_ports
from kairo_ingest.pipeline import budget as budget_module
from kairo_ingest.pipeline import openings as openings_module
from kairo_ingest.pipeline import pg_runs, ports, tx
from kairo_ingest.pipeline import tenants as tenants_module


@dataclasses.dataclass(frozen=True)
class Deps:
    engine: sa_async.AsyncEngine
    apify: apify_ports.ApifyRuns
    """Apify, as the pipeline sees it (``ApifyClient`` in the product)."""
    disabled_capabilities: frozenset[str]
    freshness_ttl: dt.timedelta
    run_deadline_seconds: float
    source_concurrency: int
    run_slots: asyncio.Semaphore
    """Bounds concurrent Apify runs across every job of this process."""
    caps: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Result caps by ``platform.capability`` (``KAIRO_CAP_*``); a pair not in it gets the
    registry's default."""
    features: frozenset[str] = frozenset()
    """The pairs whose feature flag is on (``KAIRO_FEATURE_*``)."""
    page_size: int = 1000
    clock: clock.Clock = clock.SYSTEM
    lease_seconds: float = 60.0
    """The job lease; database retries inside the job stop well before it could end."""
    db_retry: tx.Policy | None = None
    """Overrides the retry policy derived from ``lease_seconds`` (tests)."""
    tenants: tenants_module.Tenants | None = None
    """Per-source Apify accounts; None: every source uses ``apify`` (the default account)."""
    tenant: tenants_module.Tenant | None = None
    """The account of the source at hand (set per source by ``source_run``)."""
    budget: budget_module.Budget | None = None
    """The accounts' shared run budgets and daily caps; None: no budget (tests)."""
    run_max_charge_usd: float | None = None
    """Sent as every run's ``maxTotalChargeUsd``: the most a pay-per-event run may charge,
    which bounds what runs in flight add past a daily cap. None: not sent."""
    run_store: ports.RunStore | None = None
    """Overrides the run store made from ``engine`` (tests: the in-memory one)."""
    openings: openings_module.OpeningReads = dataclasses.field(
        init=False, repr=False, compare=False
    )
    """Batches the opening reads of jobs that start together (made from ``engine``)."""
    runs: ports.RunStore = dataclasses.field(init=False, repr=False, compare=False)
    """What a source's run reads and writes (``run_store``, else PostgreSQL on ``engine``
    with :attr:`retry_policy`)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "openings", openings_module.OpeningReads(self.engine))
        runs = self.run_store
        if runs is None:
            runs = pg_runs.PostgresRunStore(self.engine, self.retry_policy)
        object.__setattr__(self, "runs", runs)

    @property
    def run_memory_mbytes(self) -> int | None:
        """The memory every run is started with: what its slot counts (``budget``).

        None without a budget (tests): Apify then gives the run its actor's default.
        """
        return self.budget.memory_mbytes if self.budget is not None else None

    @property
    def retry_policy(self) -> tx.Policy:
        if self.db_retry is not None:
            return self.db_retry
        return tx.Policy.for_lease(self.lease_seconds, self.clock)
