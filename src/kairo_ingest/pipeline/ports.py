"""The run-store port: exactly what a source's run asks of the database, as a protocol.

``pipeline/source_run.py`` reads and writes the ``apify_runs`` row of a source (and its
raw items) only through :class:`RunStore`; Apify only through
:class:`kairo_ingest.apify.ports.ApifyRuns`. Two adapters implement the store:

* :class:`kairo_ingest.pipeline.pg_runs.PostgresRunStore`, the product's: each call is
  one unit of :mod:`kairo_ingest.pipeline.tx` over :mod:`kairo_ingest.db.runs` (and
  :func:`kairo_ingest.pipeline.store.store_page`), retried with the job's policy; the
  SQL and its expressions (``now()``, ``coalesce``) stay there;
* ``tests/support/memory_runs.py``, runs in dicts, for the state machine's unit tests.

One conformance suite (``tests/integration/ports/test_run_store_conformance.py``) holds
both to the same semantics:

* every write takes the job's lease and is fenced: under a lease that is no longer the
  job's it raises :class:`~kairo_ingest.errors.LeaseLostError` and changes nothing;
* each call is one unit, safe to retry whole: :meth:`RunStore.create_intent` looks for
  the intent a retried unit already committed before it inserts one, page writes are
  idempotent by ``(run, item_index)``, updates set values;
* the first end recorded wins (:meth:`RunStore.record_end`): an ended row is returned
  unchanged and never goes back to a running status;
* an Apify run is bound to one intent at most (a second binding raises
  :class:`~kairo_ingest.errors.DatabaseConstraintError`);
* times (``sent_at``, ``finished_at``, ``released_at``...) are the store's clock.

See docs/architecture.md and docs/apify-runs.md.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import runs, sources
from kairo_ingest.pipeline import store
from kairo_ingest.queue import jobs as queue_jobs

Lease = queue_jobs.Lease


class RunStore(Protocol):
    """What a source's run needs from the database (see the module docstring)."""

    async def latest_for(self, *, job_id: uuid.UUID, source_id: uuid.UUID) -> runs.Run | None:
        """The job's newest run of the source (by creation, then attempt), or None."""
        ...

    async def create_intent(
        self,
        lease: Lease,
        *,
        source: sources.Source,
        actor_id: str,
        run_input: dict[str, Any],
        cap: int,
        attempt: int,
        account: str,
    ) -> runs.Run:
        """A new STARTING intent of this job attempt, with its exact input; or the one a
        retried unit already committed (same attempt, still STARTING, not bound)."""
        ...

    async def mark_sent(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        """A start request for the intent is about to go out (``sent_at`` = now)."""
        ...

    async def bind_started(
        self,
        lease: Lease,
        run_id: uuid.UUID,
        info: apify_models.RunInfo,
        *,
        end: runs.End | None,
    ) -> tuple[runs.Run, bool]:
        """Bind the intent to its Apify run (id, dataset, start time, and its status when
        ``end`` is None); with ``end`` (an adopted run that had ended), record that end in
        the same unit. The row afterwards, and whether an end was written."""
        ...

    async def record_end(
        self, lease: Lease, run_id: uuid.UUID, end: runs.End
    ) -> tuple[runs.Run, bool]:
        """Write the run's end unless one is recorded: the first end wins."""
        ...

    async def mark_start_failed(
        self, lease: Lease, run_id: uuid.UUID, *, error_kind: str, error_summary: str
    ) -> runs.Run:
        """No run was created (a definite refusal, a daily cap): START_FAILED, ended now."""
        ...

    async def release(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        """The job stops following the run: the ledger follows it from now."""
        ...

    async def take_back(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        """The job follows a released run again (the ledger no longer does)."""
        ...

    async def mark_timed_out_unended(
        self, lease: Lease, run_id: uuid.UUID, *, status: str
    ) -> runs.Run:
        """Aborted at our deadline but not ended yet: ``status`` as last seen, partial
        ``timed_out``, abort requested now, released to the ledger."""
        ...

    async def set_dataset(self, lease: Lease, run_id: uuid.UUID, dataset_id: str) -> runs.Run:
        """The run's dataset id, learnt after its end was recorded without it."""
        ...

    async def owned_apify_run_ids(self, *, actor_id: str, since: dt.datetime) -> set[str]:
        """The Apify runs already bound to an intent of ``actor_id``, started since ``since``."""
        ...

    async def owned_and_now(
        self, *, actor_id: str, since: dt.datetime
    ) -> tuple[set[str], dt.datetime]:
        """:meth:`owned_apify_run_ids` and the store's clock, in one read."""
        ...

    async def seconds_since_start(self, run_id: uuid.UUID) -> float:
        """How long ago the run started (its intent, when not started), by the store's clock."""
        ...

    async def store_page(
        self,
        lease: Lease,
        run: runs.Run,
        *,
        platform: str,
        capability: str,
        page: Sequence[tuple[int, Any]],
    ) -> store.Counts:
        """Store a page of ``(item_index, raw_item)`` with its evidence and counts; items
        already stored are left alone (see :func:`kairo_ingest.pipeline.store.store_page`)."""
        ...

    async def mark_stored(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        """Every page is stored and normalized (``raw_stored_at``), counts at least 0."""
        ...
