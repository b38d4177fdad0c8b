"""An in-memory run store: the run-store port (:class:`kairo_ingest.pipeline.ports.RunStore`)
without a database, on an injectable clock. Test tooling, not the product.

It keeps the semantics the conformance suite (``tests/integration/ports/``) holds the
PostgreSQL adapter to: writes fenced by the job's lease token (which the test holds and
loses: :meth:`MemoryRunStore.hold`, :meth:`MemoryRunStore.lose`), an intent looked up
before it is inserted, one intent per Apify run, the first end wins, raw items keyed by
``(run, item_index)`` (a page written twice stores nothing twice), evidence keyed by the
brand and the item's dedupe key, and the run's counts.

It also records what it was asked (``calls``) and can crash after a given number of
writes (``crash_after_writes``): the write commits, then :class:`Crash` (a
``BaseException``, like a process that dies) is raised, so a test can resume from every
point a crash can leave.

Not modelled: retries (a unit never fails here), the ledger's columns beyond
``released_at`` and ``ledger_check_at``, partitions, database-refused values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

from kairo_ingest import errors
from kairo_ingest.apify import models as apify_models
from kairo_ingest.db import runs, sources
from kairo_ingest.domain import charges, normalize, statuses
from kairo_ingest.pipeline import store
from kairo_ingest.queue import jobs as queue_jobs
from support import memory_queue

Lease = queue_jobs.Lease


class Crash(BaseException):
    """The process died right after a write committed."""


@dataclasses.dataclass
class _Row:
    run: runs.Run
    created_at: dt.datetime
    seq: int


class MemoryRunStore:
    """Runs in dicts; see the module docstring."""

    def __init__(self, clock: memory_queue.ManualClock | None = None) -> None:
        self.clock = clock if clock is not None else memory_queue.ManualClock()
        self.rows: dict[uuid.UUID, _Row] = {}
        self.raw: dict[tuple[uuid.UUID, int], tuple[str, str | None]] = {}
        """``(run_id, item_index)`` -> (raw JSON text, skip reason)."""
        self.evidence: dict[tuple[uuid.UUID, tuple[str, str, str]], uuid.UUID] = {}
        """``(brand_id, dedupe_key)`` -> the run that first wrote it."""
        self.calls: list[str] = []
        self.writes = 0
        self.crash_after_writes: int | None = None
        self._tokens: dict[uuid.UUID, uuid.UUID] = {}
        self._seq = itertools.count()

    # ------------------------------------------------------------------ test controls

    def hold(self, lease: Lease) -> None:
        """``lease`` is the job's lease from now: its writes pass the fence."""
        self._tokens[lease.job_id] = lease.token

    def lose(self, lease: Lease) -> None:
        """The job's lease moved on: writes under ``lease`` raise ``LeaseLostError``."""
        self._tokens[lease.job_id] = uuid.uuid4()

    def run(self, run_id: uuid.UUID) -> runs.Run:
        return self.rows[run_id].run

    def runs_of(self, job_id: uuid.UUID) -> list[runs.Run]:
        rows = sorted(self.rows.values(), key=lambda r: r.seq)
        return [r.run for r in rows if r.run.job_id == job_id]

    def put(self, run: runs.Run) -> runs.Run:
        """Insert a row as it is (a state a test starts from)."""
        self.rows[run.id] = _Row(run, self.clock.now(), next(self._seq))
        return run

    # ------------------------------------------------------------------ plumbing

    def _fence(self, lease: Lease, operation: str) -> None:
        self.calls.append(operation)
        if self._tokens.get(lease.job_id) != lease.token:
            raise errors.LeaseLostError(f"job {lease.job_id}: lease of {lease.owner} was lost")

    def _committed(self) -> None:
        self.writes += 1
        if self.crash_after_writes is not None and self.writes >= self.crash_after_writes:
            self.crash_after_writes = None
            raise Crash(f"crashed after write {self.writes}")

    def _set(self, run_id: uuid.UUID, **values: Any) -> runs.Run:
        row = self.rows[run_id]
        row.run = dataclasses.replace(row.run, **values)
        return row.run

    def _update(self, lease: Lease, operation: str, run_id: uuid.UUID, **values: Any) -> runs.Run:
        self._fence(lease, operation)
        run = self._set(run_id, **values)
        self._committed()
        return run

    def _latest(self, job_id: uuid.UUID, source_id: uuid.UUID) -> runs.Run | None:
        mine = [
            r
            for r in self.rows.values()
            if r.run.job_id == job_id and r.run.source_connection_id == source_id
        ]
        if not mine:
            return None
        return max(mine, key=lambda r: (r.created_at, r.run.attempt, r.seq)).run

    # ------------------------------------------------------------------ the port

    async def latest_for(self, *, job_id: uuid.UUID, source_id: uuid.UUID) -> runs.Run | None:
        self.calls.append("latest_for")
        return self._latest(job_id, source_id)

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
        self._fence(lease, "create_intent")
        latest = self._latest(lease.job_id, source.id)
        if (
            latest is not None
            and latest.attempt == attempt
            and latest.status == statuses.RunStatus.STARTING
            and latest.apify_run_id is None
        ):
            return latest
        run = self.put(
            runs.Run(
                id=uuid.uuid4(),
                job_id=lease.job_id,
                source_connection_id=source.id,
                brand_id=source.brand_id,
                actor_id=actor_id,
                input=run_input,
                attempt=attempt,
                apify_run_id=None,
                dataset_id=None,
                status=statuses.RunStatus.STARTING,
                intent_at=self.clock.now(),
                started_at=None,
                finished_at=None,
                item_cap=cap,
                raw_item_count=None,
                raw_stored_at=None,
                normalized_item_count=None,
                normalized_created=None,
                normalized_updated=None,
                items_skipped=None,
                normalized_at=None,
                error_kind=None,
                error_summary=None,
                account=account,
            )
        )
        self._committed()
        return run

    async def mark_sent(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        return self._update(lease, "mark_sent", run_id, sent_at=self.clock.now())

    async def bind_started(
        self,
        lease: Lease,
        run_id: uuid.UUID,
        info: apify_models.RunInfo,
        *,
        end: runs.End | None,
    ) -> tuple[runs.Run, bool]:
        self._fence(lease, "bind_started")
        if any(r.run.apify_run_id == info.id and r.run.id != run_id for r in self.rows.values()):
            raise errors.DatabaseConstraintError(
                f"Apify run {info.id} is bound to another intent",
                sqlstate="23505",
                constraint_name="apify_runs_apify_run_id_key",
            )
        values: dict[str, Any] = {
            "apify_run_id": info.id,
            "dataset_id": info.default_dataset_id,
            "started_at": info.started_at or self.clock.now(),
        }
        if end is None:
            values["status"] = info.status
        bound = self._set(run_id, **values)
        wrote = False
        if end is not None:
            bound, wrote = self._end(run_id, end)
        self._committed()
        return bound, wrote

    def _end(self, run_id: uuid.UUID, end: runs.End) -> tuple[runs.Run, bool]:
        row = self.rows[run_id].run
        if row.status in statuses.RUN_ENDED:
            return row, False

        def first(*values: Any) -> Any:
            return next((v for v in values if v is not None), None)

        now = self.clock.now()
        return (
            self._set(
                run_id,
                status=end.status,
                finished_at=first(end.finished_at, row.finished_at, now),
                dataset_id=first(end.dataset_id, row.dataset_id),
                usage_total_usd=first(end.usage_total_usd, row.usage_total_usd),
                usage=first(end.usage, row.usage),
                max_total_charge_usd=first(end.max_total_charge_usd, row.max_total_charge_usd),
                charged_event_counts=first(end.charged_event_counts, row.charged_event_counts),
                partial_reason=end.partial_reason,
                ended_by=end.ended_by,
                error_kind=end.error_kind,
                error_summary=end.error_summary,
                ledger_check_at=None,
                abort_requested_at=first(row.abort_requested_at, now)
                if end.aborted
                else row.abort_requested_at,
            ),
            True,
        )

    async def record_end(
        self, lease: Lease, run_id: uuid.UUID, end: runs.End
    ) -> tuple[runs.Run, bool]:
        self._fence(lease, "record_end")
        ended = self._end(run_id, end)
        self._committed()
        return ended

    async def mark_start_failed(
        self, lease: Lease, run_id: uuid.UUID, *, error_kind: str, error_summary: str
    ) -> runs.Run:
        return self._update(
            lease,
            "mark_start_failed",
            run_id,
            status=statuses.RunStatus.START_FAILED,
            finished_at=self.clock.now(),
            error_kind=error_kind,
            error_summary=error_summary,
        )

    async def release(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        now = self.clock.now()
        return self._update(lease, "release", run_id, released_at=now, ledger_check_at=now)

    async def take_back(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        return self._update(lease, "take_back", run_id, released_at=None, ledger_check_at=None)

    async def mark_timed_out_unended(
        self, lease: Lease, run_id: uuid.UUID, *, status: str
    ) -> runs.Run:
        now = self.clock.now()
        return self._update(
            lease,
            "mark_timed_out_unended",
            run_id,
            status=status,
            partial_reason=charges.PartialReason.TIMED_OUT.value,
            abort_requested_at=now,
            released_at=now,
            ledger_check_at=now,
        )

    async def set_dataset(self, lease: Lease, run_id: uuid.UUID, dataset_id: str) -> runs.Run:
        return self._update(lease, "set_dataset", run_id, dataset_id=dataset_id)

    def _owned(self, actor_id: str, since: dt.datetime) -> set[str]:
        return {
            r.run.apify_run_id
            for r in self.rows.values()
            if r.run.actor_id == actor_id
            and r.run.apify_run_id is not None
            and r.run.started_at is not None
            and r.run.started_at >= since
        }

    async def owned_apify_run_ids(self, *, actor_id: str, since: dt.datetime) -> set[str]:
        self.calls.append("owned_apify_run_ids")
        return self._owned(actor_id, since)

    async def owned_and_now(
        self, *, actor_id: str, since: dt.datetime
    ) -> tuple[set[str], dt.datetime]:
        self.calls.append("owned_and_now")
        return self._owned(actor_id, since), self.clock.now()

    async def seconds_since_start(self, run_id: uuid.UUID) -> float:
        self.calls.append("seconds_since_start")
        row = self.rows.get(run_id)
        if row is None:
            return 0.0
        began = row.run.started_at or row.run.intent_at
        return (self.clock.now() - began).total_seconds()

    async def store_page(
        self,
        lease: Lease,
        run: runs.Run,
        *,
        platform: str,
        capability: str,
        page: Sequence[tuple[int, Any]],
    ) -> store.Counts:
        prepared = store.prepare(platform, capability, page)
        self._fence(lease, "store_page")
        raw = created = updated = skipped = 0
        for item in prepared:
            key = (run.id, item.index)
            if key in self.raw:
                continue
            self.raw[key] = (item.doc, item.skip_reason)
            raw += 1
            if isinstance(item.result, normalize.Skip):
                skipped += 1
                continue
            evidence_key = (run.brand_id, item.result.dedupe_key)
            if evidence_key in self.evidence:
                updated += 1
            else:
                self.evidence[evidence_key] = run.id
                created += 1
        row = self.rows[run.id].run
        self._set(
            run.id,
            raw_item_count=(row.raw_item_count or 0) + raw,
            normalized_created=(row.normalized_created or 0) + created,
            normalized_updated=(row.normalized_updated or 0) + updated,
            items_skipped=(row.items_skipped or 0) + skipped,
            normalized_item_count=(row.normalized_item_count or 0) + created + updated,
        )
        self._committed()
        return store.Counts(raw, created, updated, skipped)

    async def mark_stored(self, lease: Lease, run_id: uuid.UUID) -> runs.Run:
        now = self.clock.now()
        row = self.rows[run_id].run
        return self._update(
            lease,
            "mark_stored",
            run_id,
            raw_stored_at=now,
            normalized_at=now,
            raw_item_count=row.raw_item_count or 0,
        )
