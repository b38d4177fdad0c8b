"""The Apify port: exactly what the pipeline asks of Apify about runs, as a protocol.

A source's run (``pipeline/source_run.py``) starts a run, lists an actor's runs and
reads their INPUT records to adopt one (:mod:`kairo_ingest.apify.reconcile`), reads a
run, waits for it (aborting it at the deadline) and pages through its dataset; the run
ledger also aborts runs. :class:`ApifyRuns` names those calls;
:class:`kairo_ingest.apify.client.ApifyClient` satisfies it as it is (structurally), and
the state machine's unit tests use a scripted fake (``tests/support/fake_apify.py``).

It lives in ``apify`` rather than ``pipeline`` because ``reconcile`` is typed against it,
and the adapters import no layer above them. See docs/architecture.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from kairo_ingest import clock
from kairo_ingest.apify import client, models, retrying


class ApifyRuns(Protocol):
    """What the pipeline needs from Apify (see the module docstring and ``ApifyClient``
    for each call's errors: an unknown start raises ``ApifyStartUnknownError``)."""

    @property
    def sleep(self) -> retrying.Sleep:
        """How long reconciliation lets the platform settle (tests pass a recorder)."""
        ...

    async def start_run(
        self,
        actor_id: str,
        input: Mapping[str, Any] | None,
        *,
        timeout_secs: int | None = None,
        memory_mbytes: int | None = None,
        max_items: int | None = None,
        max_total_charge_usd: float | None = None,
        webhooks: Sequence[Mapping[str, Any]] | None = None,
        deadline: clock.Deadline | None = None,
    ) -> models.RunInfo:
        """Start a run of ``actor_id`` with ``input``; the new run."""
        ...

    async def get_run(
        self, run_id: str, wait_secs: int = 0, *, deadline: clock.Deadline | None = None
    ) -> models.RunInfo:
        """The run, after waiting at most ``wait_secs`` for its end."""
        ...

    async def wait_or_abort(
        self,
        run_id: str,
        deadline: clock.Deadline,
        *,
        gracefully: bool = False,
        abort_timeout_seconds: float = 10.0,
        not_found_grace_seconds: float = client.NOT_FOUND_GRACE_SECONDS,
    ) -> models.RunEnd:
        """Wait for the run's end; at ``deadline``, abort it and take a final look."""
        ...

    async def abort_run(
        self, run_id: str, gracefully: bool = False, *, timeout_seconds: float = 10.0
    ) -> models.RunInfo:
        """Ask Apify to abort the run (a no-op for a run that ended)."""
        ...

    async def list_runs(
        self,
        actor_id: str,
        *,
        started_after: dt.datetime | None = None,
        started_before: dt.datetime | None = None,
        status: str | None = None,
        limit: int = 1000,
        offset: int = 0,
        desc: bool = True,
        deadline: clock.Deadline | None = None,
    ) -> list[models.RunInfo]:
        """One page of the actor's runs started in the window."""
        ...

    async def get_run_input(
        self, run_id: str, *, deadline: clock.Deadline | None = None
    ) -> dict[str, Any] | None:
        """The run's stored INPUT record, or None when the run or the record is missing."""
        ...

    def iter_dataset_items(
        self,
        dataset_id: str,
        *,
        limit: int | None = None,
        page_size: int = 1000,
        start_index: int = 0,
        page_deadline_seconds: float | None = None,
    ) -> AsyncIterator[tuple[int, Any]]:
        """``(absolute_index, item)`` of the dataset, page by page, at most ``limit``."""
        ...
