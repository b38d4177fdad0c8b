"""A scripted Apify: the Apify port (:class:`kairo_ingest.apify.ports.ApifyRuns`) in memory,
for the state machine's unit tests. Test tooling, not the product.

Runs live in a dict; every call is recorded (``calls``: the method's name and its run or
actor). By default a start creates a RUNNING run with a dataset of ``items_per_run``
items, and a wait ends it ``end_status``. Scripts override one call at a time:
``start_script`` (an error to raise, optionally after creating the run: a lost answer),
``wait_script`` (an error, or a :class:`~kairo_ingest.apify.models.RunEnd` to return).
Settling sleeps are recorded, never waited (``sleeps``); ``on_start`` sees each start
arrive.

Why not the simulator through ``httpx.ASGITransport``: its runs progress on real time
(``asyncio.sleep`` and the wall clock), and these tests need each branch on cue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from kairo_ingest import clock, errors
from kairo_ingest.apify import client as apify_client
from kairo_ingest.apify import models
from kairo_ingest.domain import statuses
from support import memory_queue


@dataclasses.dataclass
class StartOutcome:
    """What the next start does instead of answering: raise ``error``, after creating the
    run when ``created`` (the request reached Apify, its answer was lost)."""

    error: errors.ApifyError
    created: bool = False


@dataclasses.dataclass
class FakeRun:
    info: models.RunInfo
    input: dict[str, Any]
    items: list[Any]


class FakeApify:
    """See the module docstring."""

    def __init__(
        self,
        clock_: memory_queue.ManualClock | None = None,
        *,
        items_per_run: int = 3,
        end_status: str = statuses.RunStatus.SUCCEEDED,
    ) -> None:
        self.clock = clock_ if clock_ is not None else memory_queue.ManualClock()
        self.items_per_run = items_per_run
        self.end_status = end_status
        self.runs: dict[str, FakeRun] = {}
        self.calls: list[tuple[str, str]] = []
        self.start_kwargs: list[dict[str, Any]] = []
        self.start_script: list[StartOutcome] = []
        self.wait_script: list[errors.ApifyError | models.RunEnd] = []
        self.sleeps: list[float] = []
        self.on_start: Callable[[], None] | None = None
        """Called as each start request arrives (a test looks at the store then)."""
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ test controls

    def count(self, name: str) -> int:
        return sum(1 for call, _ in self.calls if call == name)

    def add_run(
        self,
        actor_id: str,
        run_input: Mapping[str, Any],
        *,
        status: str = statuses.RunStatus.RUNNING,
        items: Sequence[Any] | None = None,
        **info: Any,
    ) -> models.RunInfo:
        """A run that exists on Apify (started by someone, or by a start whose answer was
        lost)."""
        n = next(self._ids)
        run = models.RunInfo(
            id=f"run-{n}",
            act_id=actor_id,
            status=status,
            started_at=self.clock.now(),
            finished_at=self.clock.now() if statuses.is_terminal(status) else None,
            default_dataset_id=f"ds-{n}",
            usage_total_usd=0.01,
            **info,
        )
        made = [
            {"url": f"https://acme.example/{n}/{i}", "text": f"page {i}"}
            for i in range(self.items_per_run)
        ]
        self.runs[run.id] = FakeRun(
            run, dict(run_input), list(items) if items is not None else made
        )
        return run

    def end(self, run_id: str, status: str | None = None) -> models.RunInfo:
        """The run ends (``end_status`` unless told), with its cost."""
        fake = self.runs[run_id]
        fake.info = dataclasses.replace(
            fake.info,
            status=status or self.end_status,
            finished_at=self.clock.now(),
            usage_total_usd=0.05,
        )
        return fake.info

    # ------------------------------------------------------------------ the port

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

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
        self.calls.append(("start_run", actor_id))
        if self.on_start is not None:
            self.on_start()
        self.start_kwargs.append(
            {
                "timeout_secs": timeout_secs,
                "memory_mbytes": memory_mbytes,
                "max_items": max_items,
                "max_total_charge_usd": max_total_charge_usd,
            }
        )
        if self.start_script:
            outcome = self.start_script.pop(0)
            if outcome.created:
                self.add_run(actor_id, input or {}, memory_mbytes=memory_mbytes)
            raise outcome.error
        return self.add_run(actor_id, input or {}, memory_mbytes=memory_mbytes)

    async def get_run(
        self, run_id: str, wait_secs: int = 0, *, deadline: clock.Deadline | None = None
    ) -> models.RunInfo:
        self.calls.append(("get_run", run_id))
        if run_id not in self.runs:
            raise errors.ApifyNotFoundError(f"run {run_id} not found", status_code=404)
        return self.runs[run_id].info

    async def wait_or_abort(
        self,
        run_id: str,
        deadline: clock.Deadline,
        *,
        gracefully: bool = False,
        abort_timeout_seconds: float = 10.0,
        not_found_grace_seconds: float = apify_client.NOT_FOUND_GRACE_SECONDS,
    ) -> models.RunEnd:
        self.calls.append(("wait_or_abort", run_id))
        if self.wait_script:
            scripted = self.wait_script.pop(0)
            if isinstance(scripted, errors.ApifyError):
                raise scripted
            if scripted.run is not None:
                self.runs[run_id].info = scripted.run
            return scripted
        info = self.runs[run_id].info
        if not info.terminal:
            info = self.end(run_id)
        return models.RunEnd(info)

    async def abort_run(
        self, run_id: str, gracefully: bool = False, *, timeout_seconds: float = 10.0
    ) -> models.RunInfo:
        self.calls.append(("abort_run", run_id))
        return self.end(run_id, statuses.RunStatus.ABORTED)

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
        self.calls.append(("list_runs", actor_id))
        found = [
            r.info
            for r in self.runs.values()
            if r.info.act_id == actor_id
            and r.info.started_at is not None
            and (started_after is None or r.info.started_at >= started_after)
            and (started_before is None or r.info.started_at <= started_before)
        ]
        found.sort(key=lambda info: (info.started_at, info.id), reverse=desc)
        return found[offset : offset + limit]

    async def get_run_input(
        self, run_id: str, *, deadline: clock.Deadline | None = None
    ) -> dict[str, Any] | None:
        self.calls.append(("get_run_input", run_id))
        fake = self.runs.get(run_id)
        return None if fake is None else dict(fake.input)

    async def iter_dataset_items(
        self,
        dataset_id: str,
        *,
        limit: int | None = None,
        page_size: int = 1000,
        start_index: int = 0,
        page_deadline_seconds: float | None = None,
    ) -> AsyncIterator[tuple[int, Any]]:
        self.calls.append(("iter_dataset_items", dataset_id))
        fake = next(r for r in self.runs.values() if r.info.default_dataset_id == dataset_id)
        end = len(fake.items) if limit is None else min(len(fake.items), start_index + limit)
        for index in range(start_index, end):
            yield index, fake.items[index]
