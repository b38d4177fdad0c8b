"""Simulated runs, their lifecycle, and the counters tests assert on.

A run is planned once, deterministically from the seed and its id (:func:`plan_run`):
how long it runs, how it ends and how many items it yields. It then moves READY ->
RUNNING -> SUCCEEDED / FAILED / TIMED-OUT (through TIMING-OUT when ``timing_out_seconds``
is set) on event-loop timers. An abort always passes through ABORTING before ABORTED:
``abort_grace_seconds`` for a graceful one (the actor works on meanwhile),
``forced_abort_seconds`` for a forced one (the run stops working at once). Each run has
an :class:`asyncio.Event` set when it ends, which is what a ``waitForFinish`` long-poll
waits on: it answers the moment the run ends.

Money, as the run object reports it (:meth:`SimRun.money`): every actor is priced per
event (``pricingInfo``, :func:`~kairo_apify_sim.platform.pricing_info`) with one
event, ``apify-default-dataset-item``, charged per item pushed (``chargedEventCounts``);
the account also pays the run's platform usage (``usage``, priced in ``usageUsd``). So
``usageTotalUsd`` = sum(``usageUsd``) + sum(count x ``eventPriceUsd``), rounded to 6
decimals, and never more than ``options.maxTotalChargeUsd``. Items count as pushed as the
dataset serves them, so a running run's figures grow as it goes.

A run started with ``maxTotalChargeUsd`` behaves as a pay-per-event actor does
(:func:`charge_capped`): it stops at the last item whose charge fits, and either finishes
(SUCCEEDED) or is aborted by the platform (ABORTING, then ABORTED), as
``charge_cap_outcome_weights`` draws per run; its dataset keeps the items pushed, and its
``usageTotalUsd`` never exceeds the max.

Visibility (``visibility_lag_seconds``) is measured on the state's injectable ``clock``
(a monotonic ``() -> float``; tests pass a fake one and move it instead of sleeping).

All of it lives on one event loop; nothing here is thread-safe except reading counters.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
import random
import string
import time
from collections.abc import Callable, Mapping
from typing import Any

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import datasets, platform

ID_ALPHABET = string.ascii_letters + string.digits
USER_ID = "kairoSimUser00001"
MESSAGES = {
    "READY": "Starting the Actor run",
    "RUNNING": "Crawling",
    "SUCCEEDED": "Finished! Total {items} items",
    "FAILED": "The Actor process exited with code 1",
    "TIMING-OUT": "The Actor run is timing out",
    "TIMED-OUT": "The Actor run timed out",
    "ABORTING": "Aborting the Actor run",
    "ABORTED": "The Actor run was aborted",
}


def make_id(*parts: object) -> str:
    """A 17-character Apify-style id, deterministic in ``parts``."""
    rng = random.Random(":".join(map(str, parts)))
    return "".join(rng.choice(ID_ALPHABET) for _ in range(17))


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True, slots=True)
class RunPlan:
    """How a run will go. ``duration_seconds`` is simulated (multiply by the time factor)."""

    duration_seconds: float
    outcome: str
    item_count: int
    stopped_at_max_charge: bool = False
    """Cut short by the run's ``maxTotalChargeUsd`` (:func:`charge_capped`); its
    ``outcome`` is then SUCCEEDED (the actor finished) or ABORTED (the platform aborted it)."""


def plan_run(
    cfg: sim_config.SimConfig,
    *,
    run_id: str,
    run_input: object,
    max_items: int | None = None,
    timeout_secs: int | None = None,
) -> RunPlan:
    """The deterministic plan of a run: same seed and run id, same plan.

    The item count is the least of ``maxItems`` and the input's limit fields, else
    ``default_item_count``; a FAILED or TIMED-OUT run yields only part of it. A run whose
    duration exceeds its ``timeout`` ends TIMED-OUT at the timeout.
    """
    rng = random.Random(f"{cfg.seed}:plan:{run_id}")
    low = min(cfg.duration_min_seconds, cfg.duration_max_seconds)
    duration = rng.uniform(low, max(low, cfg.duration_max_seconds))
    weights = {k: w for k, w in cfg.outcome_weights.items() if w > 0} or {"SUCCEEDED": 1.0}
    outcome = rng.choices(list(weights), weights=list(weights.values()))[0]
    if timeout_secs is not None and timeout_secs > 0 and duration > timeout_secs:
        duration, outcome = float(timeout_secs), "TIMED-OUT"
    cap = datasets.item_cap(run_input, max_items)
    count = cap if cap is not None else cfg.default_item_count
    if outcome == "FAILED":
        count = int(count * rng.random() * 0.5)
    elif outcome == "TIMED-OUT":
        count = int(count * rng.uniform(0.3, 1.0))
    return RunPlan(duration_seconds=duration, outcome=outcome, item_count=max(0, count))


def cost_usd(*, memory_mbytes: int, simulated_seconds: float, items: int) -> float:
    """What a run has cost, unrounded: the INPUT record's read and write, compute (memory
    GB x hours x ``USD_PER_CU``), and per item a dataset write and the actor's charge per
    result. :meth:`SimRun.usage_total_usd` reports the same sum, rounded per part."""
    fixed = platform.USD_PER_KVS_READ + platform.USD_PER_KVS_WRITE
    compute = memory_mbytes / 1024 * simulated_seconds / 3600 * platform.USD_PER_CU
    per_item = platform.USD_PER_DATASET_WRITE + platform.USD_PER_RESULT
    return fixed + compute + items * per_item


def charge_cap_outcome(cfg: sim_config.SimConfig, run_id: str) -> str:
    """How the run ends if its ``maxTotalChargeUsd`` stops it: SUCCEEDED or ABORTED, drawn
    from ``charge_cap_outcome_weights`` (same seed and run id, same outcome)."""
    weights = {
        k: w
        for k, w in cfg.charge_cap_outcome_weights.items()
        if k in sim_config.CHARGE_CAP_OUTCOMES and w > 0
    } or {"SUCCEEDED": 1.0}
    rng = random.Random(f"{cfg.seed}:cap:{run_id}")
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def charge_capped(
    plan: RunPlan,
    *,
    memory_mbytes: int,
    max_total_charge_usd: float,
    outcome: str = "SUCCEEDED",
) -> RunPlan:
    """The plan of a run started with ``maxTotalChargeUsd``, as a pay-per-event actor runs.

    The simulator counts a run's whole cost (:func:`cost_usd`) as what the actor charges.
    The charge grows as the run goes: compute with time, and a charge per result as each
    item is pushed (items come evenly over the planned duration, item ``i`` of ``n`` at
    ``i/n`` of it). Apify refuses a charge that would pass the max and tells the actor,
    which stops. So the run keeps only the items whose charge fits, goes on at most until
    its compute reaches the max or its next item is due, and ends there with the items
    pushed so far: ``outcome`` SUCCEEDED (the actor finishes) or ABORTED (the platform
    aborts it; :meth:`SimState._end` takes it through ABORTING). A plan whose whole cost
    fits is returned unchanged.
    """
    limit = max_total_charge_usd
    count, duration = plan.item_count, plan.duration_seconds

    def cost(share: float, items: int) -> float:
        seconds = duration * share
        return cost_usd(memory_mbytes=memory_mbytes, simulated_seconds=seconds, items=items)

    if cost(1.0, count) <= limit:
        return plan
    fixed = cost(0.0, 0)
    compute = cost(1.0, 0) - fixed  # over the whole planned duration
    per_item = cost(0.0, 1) - fixed
    pushed = 0
    if count > 0:
        # Item k is pushed at k/count of the run: it fits while fixed + compute * k/count
        # + per_item * k <= limit. Solved for k, then checked (floating point).
        pushed = max(0, min(count, int((limit - fixed) / (compute / count + per_item))))
        while pushed > 0 and cost(pushed / count, pushed) > limit:
            pushed -= 1
    room = limit - cost(0.0, pushed)
    share = room / compute if compute > 0 else 1.0
    if pushed < count:
        share = min(share, (pushed + 1) / count)  # the next item's charge does not fit
    share = max(0.0, min(1.0, share))
    return RunPlan(
        duration_seconds=duration * share,
        outcome=outcome,
        item_count=pushed,
        stopped_at_max_charge=True,
    )


class SimRun:
    """One simulated actor run."""

    def __init__(
        self,
        *,
        run_id: str,
        actor: str,
        act_id: str,
        run_input: Any,
        options: dict[str, Any],
        plan: RunPlan,
        sequence: int,
        created_clock: float = 0.0,
        stored_input: Any = None,
        token_tag: str | None = None,
        pricing_info: dict[str, Any] | None = None,
    ) -> None:
        self.id = run_id
        # Which token started the run (a digest, never the token: platform.token_tag).
        self.token_tag = token_tag
        self.request_tags: collections.Counter[str | None] = collections.Counter()
        self.actor = actor
        self.act_id = act_id
        self.input = run_input
        self.stored_input = run_input if stored_input is None else stored_input
        self.created_clock = created_clock  # the state's clock when the run was created
        self.options = options
        self.plan = plan
        self.sequence = sequence
        self.status = "READY"
        self.status_message = MESSAGES["READY"]
        self.exit_code: int | None = None
        self.started_at = dt.datetime.now(dt.UTC)
        self.finished_at: dt.datetime | None = None
        self.finished_epoch: float | None = None
        self.running_since: float | None = None  # loop time
        self.run_seconds = 0.0  # real seconds of RUNNING
        self.final_item_count: int | None = None
        self.worked_share: float | None = None  # share of the plan done when it stopped
        self.pricing_info = platform.pricing_info(None) if pricing_info is None else pricing_info
        self.dataset_id = make_id(run_id, "dataset")
        self.kvs_id = make_id(run_id, "kvs")
        self.rq_id = make_id(run_id, "rq")
        self.build_id = make_id(actor, "build")
        self.done = asyncio.Event()
        self.timers: list[asyncio.TimerHandle] = []
        self.log_lines: list[str] = [f"{iso(self.started_at)} ACTOR: Run started"]

    @property
    def terminal(self) -> bool:
        return self.status in platform.TERMINAL_STATUSES

    def progress(self, now: float) -> float:
        """The share of its plan the run has done (0..1): by time while it works, frozen
        once it stopped working (its planned end, a forced abort, the end of an abort)."""
        if self.worked_share is not None:
            return self.worked_share
        if self.running_since is None:
            return 0.0
        if self.run_seconds <= 0:
            return 1.0
        return max(0.0, min(1.0, (now - self.running_since) / self.run_seconds))

    def stop_working(self, now: float, share: float | None = None) -> None:
        """Freeze what the run has done (items and compute) at ``share``, else at now."""
        if self.worked_share is None:
            self.worked_share = self.progress(now) if share is None else share

    def available_items(self, now: float) -> int:
        """Items pushed so far: all of them once ended, a share of them while running."""
        if self.final_item_count is not None:
            return self.final_item_count
        return int(self.plan.item_count * self.progress(now))

    def elapsed_simulated_seconds(self, now: float | None = None) -> float:
        """How long the run has worked, in simulated seconds."""
        if now is None:
            now = asyncio.get_running_loop().time()
        return self.plan.duration_seconds * self.progress(now)

    def usage(self, now: float | None = None) -> dict[str, Any]:
        """Resource use so far: compute units (memory GB x hours) and dataset writes."""
        return self.money(now).usage

    def usage_usd(self, now: float | None = None) -> dict[str, Any]:
        return self.money(now).usage_usd

    def charged_event_counts(self, now: float | None = None) -> dict[str, int]:
        return self.money(now).charged_event_counts

    @property
    def max_total_charge_usd(self) -> float | None:
        """The ``maxTotalChargeUsd`` the run was started with, if any."""
        value = self.options.get("maxTotalChargeUsd")
        return None if value is None else float(value)

    def usage_total_usd(self, now: float | None = None) -> float:
        """What the run cost (see :meth:`money`)."""
        return self.money(now).usage_total_usd

    def money(self, now: float | None = None) -> RunMoney:
        """The run's money fields at one instant, so they always agree with each other.

        ``usage``: compute units (memory GB x hours worked), one dataset write per item
        pushed, the INPUT record's read and write; ``usageUsd`` prices each at the
        platform's prices; ``chargedEventCounts``: one ``apify-default-dataset-item`` per
        item pushed. ``usageTotalUsd`` = sum(``usageUsd``) + the events' charge, rounded to
        6 decimals and never more than ``maxTotalChargeUsd``: the run's plan stops it
        before the max (:func:`charge_capped`), and the platform charges nothing past it,
        which also covers the rounding and a max below the INPUT record's own cost.
        """
        if now is None:
            now = asyncio.get_running_loop().time()
        memory_gb = int(self.options.get("memoryMbytes") or 1024) / 1024
        items = self.available_items(now)
        compute_units = round(memory_gb * self.elapsed_simulated_seconds(now) / 3600, 6)
        usage = {
            "ACTOR_COMPUTE_UNITS": compute_units,
            "DATASET_WRITES": items,
            "KEY_VALUE_STORE_READS": 1,
            "KEY_VALUE_STORE_WRITES": 1,
        }
        usage_usd = {
            "ACTOR_COMPUTE_UNITS": round(compute_units * platform.USD_PER_CU, 6),
            "DATASET_WRITES": round(items * platform.USD_PER_DATASET_WRITE, 6),
            "KEY_VALUE_STORE_READS": platform.USD_PER_KVS_READ,
            "KEY_VALUE_STORE_WRITES": platform.USD_PER_KVS_WRITE,
        }
        events = {platform.RESULT_EVENT: items}
        charged = items * platform.USD_PER_RESULT
        total = round(float(sum(usage_usd.values()) + charged), 6)
        limit = self.max_total_charge_usd
        return RunMoney(
            usage=usage,
            usage_usd=usage_usd,
            charged_event_counts=events,
            usage_total_usd=total if limit is None else min(total, limit),
        )

    def to_json(self, *, short: bool = False) -> dict[str, Any]:
        finished = iso(self.finished_at) if self.finished_at else None
        meta = {"origin": "API", "userAgent": "kairo-simulator"}
        money = self.money()
        common: dict[str, Any] = {
            "id": self.id,
            "actId": self.act_id,
            "actorTaskId": None,
            "status": self.status,
            "startedAt": iso(self.started_at),
            "finishedAt": finished,
            "buildId": self.build_id,
            "buildNumber": "0.0.1",
            "meta": meta,
            "usageTotalUsd": money.usage_total_usd,
            "defaultKeyValueStoreId": self.kvs_id,
            "defaultDatasetId": self.dataset_id,
            "defaultRequestQueueId": self.rq_id,
        }
        if short:
            return common
        return common | {
            "userId": USER_ID,
            "statusMessage": self.status_message,
            "isStatusMessageTerminal": self.terminal,
            "exitCode": self.exit_code,
            "stats": {
                "inputBodyLen": len(str(self.input)),
                "restartCount": 0,
                "resurrectCount": 0,
                "computeUnits": money.usage["ACTOR_COMPUTE_UNITS"],
            },
            "options": self.options,
            "pricingInfo": self.pricing_info,
            "chargedEventCounts": money.charged_event_counts,
            "usage": money.usage,
            "usageUsd": money.usage_usd,
            "containerUrl": f"https://{self.id.lower()}.runs.apify.net",
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RunMoney:
    """A run's money fields at one instant (:meth:`SimRun.money`)."""

    usage: dict[str, Any]
    usage_usd: dict[str, Any]
    charged_event_counts: dict[str, int]
    usage_total_usd: float


@dataclasses.dataclass(slots=True)
class Counters:
    requests: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    rejected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    starts: int = 0
    aborts: int = 0
    abort_requests: int = 0
    input_reads: int = 0
    late_starts: int = 0
    redirects: int = 0
    long_polls_active: int = 0
    long_polls_peak: int = 0
    active_peak: int = 0  # most runs in flight at once (per token: SimState.active_peaks)
    foreign_token_requests: int = 0  # requests on a run with a token other than its starter's


class SimState:
    """All runs and counters of one simulator, plus the fault RNG."""

    def __init__(
        self,
        cfg: sim_config.SimConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = cfg or sim_config.SimConfig()
        self.clock = clock
        self.runs: dict[str, SimRun] = {}
        self.by_dataset: dict[str, SimRun] = {}
        self.actor_names: dict[str, str] = {}  # actId -> normalized name
        self.active: set[str] = set()
        self.counters = Counters()
        self.active_peaks: dict[str | None, int] = {}
        self.fault_rng = random.Random(f"{self.config.seed}:faults")
        self._sequence = itertools.count()

    # ------------------------------------------------------------------ runs

    def resolve_actor(self, actor_id: str) -> tuple[str, str]:
        """``(name, actId)`` for a path's actor id, which may be either."""
        if actor_id in self.actor_names:
            return self.actor_names[actor_id], actor_id
        name = datasets.normalize_actor(actor_id)
        act_id = make_id("actor", name)
        self.actor_names[act_id] = name
        return name, act_id

    def memory_for(self, actor_id: str) -> int:
        """The default memory of an actor: what a run started without ``memory`` gets."""
        name, _ = self.resolve_actor(actor_id)
        for key, memory in self.config.actor_memory_mbytes.items():
            if datasets.normalize_actor(key) == name:
                return memory
        return self.config.default_memory_mbytes

    def active_of(self, token_tag: str | None) -> list[str]:
        """The runs in flight on one account (a token is an account)."""
        return [r for r in self.active if self.runs[r].token_tag == token_tag]

    def capacity_error(self, memory_mbytes: int, token_tag: str | None = None) -> str | None:
        """Apify's "not now" error type if the token's account cannot start a run now."""
        cfg = self.config
        active = self.active_of(token_tag)
        if cfg.max_concurrent_runs is not None and len(active) >= cfg.max_concurrent_runs:
            return "concurrent-runs-limit-exceeded"
        if cfg.max_total_memory_mbytes is not None:
            used = sum(int(self.runs[r].options["memoryMbytes"]) for r in active)
            if used + memory_mbytes > cfg.max_total_memory_mbytes:
                return "actor-memory-limit-exceeded"
        return None

    def limit_status(self) -> int:
        """The HTTP status of a limit error, drawn from ``limit_error_statuses``."""
        choices = self.config.limit_error_statuses or [400]
        return int(self.fault_rng.choice(choices))

    def visible(self, run: SimRun) -> bool:
        """False while the run is inside the replica lag after its creation."""
        lag = self.config.visibility_lag_seconds
        return lag <= 0 or self.clock() - run.created_clock >= lag

    def create_run(
        self,
        actor_id: str,
        run_input: Any,
        *,
        timeout_secs: int | None = None,
        memory_mbytes: int | None = None,
        max_items: int | None = None,
        max_total_charge_usd: float | None = None,
        build: str | None = None,
        token_tag: str | None = None,
    ) -> SimRun:
        cfg = self.config
        sequence = next(self._sequence)
        run_id = make_id(cfg.seed, "run", sequence)
        name, act_id = self.resolve_actor(actor_id)
        memory = memory_mbytes if memory_mbytes is not None else self.memory_for(actor_id)
        options: dict[str, Any] = {
            "build": build or "latest",
            "timeoutSecs": timeout_secs if timeout_secs is not None else cfg.default_timeout_secs,
            "memoryMbytes": memory,
            "diskMbytes": 2 * memory,
            "maxItems": max_items,
        }
        plan = plan_run(
            cfg,
            run_id=run_id,
            run_input=run_input,
            max_items=max_items,
            timeout_secs=timeout_secs,
        )
        if max_total_charge_usd is not None:
            options["maxTotalChargeUsd"] = max_total_charge_usd
            plan = charge_capped(
                plan,
                memory_mbytes=memory,
                max_total_charge_usd=max_total_charge_usd,
                outcome=charge_cap_outcome(cfg, run_id),
            )
        run = SimRun(
            run_id=run_id,
            actor=name,
            act_id=act_id,
            run_input=run_input,
            options=options,
            plan=plan,
            sequence=sequence,
            created_clock=self.clock(),
            stored_input=(
                platform.stored_input(name, run_input) if cfg.input_defaults else run_input
            ),
            token_tag=token_tag,
            pricing_info=platform.pricing_info(cfg.minimal_max_total_charge_usd),
        )
        self.runs[run_id] = run
        self.by_dataset[run.dataset_id] = run
        self.active.add(run_id)
        self.counters.active_peak = max(self.counters.active_peak, len(self.active))
        peak = self.active_peaks.get(token_tag, 0)
        self.active_peaks[token_tag] = max(peak, len(self.active_of(token_tag)))
        self.counters.starts += 1
        loop = asyncio.get_running_loop()
        ready = cfg.scaled(min(cfg.ready_seconds, plan.duration_seconds))
        run.run_seconds = cfg.scaled(plan.duration_seconds) - ready
        run.timers.append(loop.call_later(ready, self._to_running, run))
        run.timers.append(
            loop.call_later(cfg.scaled(plan.duration_seconds), self._end, run, plan.outcome)
        )
        return run

    def _end(self, run: SimRun, outcome: str) -> None:
        """The planned end: the run has done all its plan. A timeout first spends
        ``timing_out_seconds`` in TIMING-OUT; a run the platform aborts at its
        ``maxTotalChargeUsd`` (a planned ABORTED) goes through ABORTING like a forced abort."""
        if run.terminal:
            return
        run.stop_working(asyncio.get_running_loop().time(), share=1.0)
        if outcome == "ABORTED":
            run.timers.clear()
            self._aborting(run, self.config.forced_abort_seconds)
            return
        seconds = self.config.timing_out_seconds
        if outcome != "TIMED-OUT" or seconds <= 0:
            self._finish(run, outcome)
            return
        run.timers.clear()
        run.status = "TIMING-OUT"
        run.status_message = MESSAGES["TIMING-OUT"]
        loop = asyncio.get_running_loop()
        run.timers.append(loop.call_later(seconds, self._finish, run, "TIMED-OUT"))

    def _to_running(self, run: SimRun) -> None:
        if run.status != "READY":
            return
        run.status = "RUNNING"
        run.status_message = MESSAGES["RUNNING"]
        run.running_since = asyncio.get_running_loop().time()
        run.log_lines.append(f"{iso(dt.datetime.now(dt.UTC))} ACTOR: Run is running")

    def _finish(self, run: SimRun, outcome: str) -> None:
        if run.terminal:
            return
        now = asyncio.get_running_loop().time()
        run.stop_working(now)  # a graceful abort: the actor worked until now
        items = run.available_items(now)
        for timer in run.timers:
            timer.cancel()
        run.timers.clear()
        run.final_item_count = items
        run.status = outcome
        run.status_message = MESSAGES[outcome].format(items=items)
        if run.plan.stopped_at_max_charge and run.worked_share == 1.0:
            run.status_message += " (the maximum total charge was reached)"
        run.exit_code = 0 if outcome == "SUCCEEDED" else 1
        run.finished_at = dt.datetime.now(dt.UTC)
        run.finished_epoch = time.time()
        run.log_lines.append(f"{iso(run.finished_at)} ACTOR: {run.status_message}")
        self.active.discard(run.id)
        run.done.set()

    def abort(self, run: SimRun, *, gracefully: bool) -> None:
        """Abort a run that is READY, RUNNING or TIMING-OUT; a no-op for ABORTING and ended
        runs. Either way the run passes through ABORTING: a graceful abort for
        ``abort_grace_seconds`` while the actor works on, a forced one for
        ``forced_abort_seconds`` with the run stopped at once."""
        self.counters.abort_requests += 1
        if run.status not in platform.ABORTABLE_STATUSES:
            return
        self.counters.aborts += 1
        for timer in run.timers:
            timer.cancel()
        run.timers.clear()
        if gracefully:
            self._aborting(run, self.config.abort_grace_seconds)
            return
        run.stop_working(asyncio.get_running_loop().time())
        self._aborting(run, self.config.forced_abort_seconds)

    def _aborting(self, run: SimRun, seconds: float) -> None:
        """ABORTING for ``seconds`` (real), then ABORTED."""
        run.status = "ABORTING"
        run.status_message = MESSAGES["ABORTING"]
        loop = asyncio.get_running_loop()
        run.timers.append(loop.call_later(max(0.0, seconds), self._finish, run, "ABORTED"))

    async def wait_for_finish(self, run: SimRun, seconds: float) -> None:
        """Return when the run ends or after ``seconds``, whichever comes first."""
        if run.terminal or seconds <= 0:
            return
        counters = self.counters
        counters.long_polls_active += 1
        counters.long_polls_peak = max(counters.long_polls_peak, counters.long_polls_active)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await run.done.wait()
        finally:
            counters.long_polls_active -= 1

    def list_runs(
        self,
        actor_id: str,
        *,
        status: set[str] | None = None,
        started_after: dt.datetime | None = None,
        started_before: dt.datetime | None = None,
        desc: bool = False,
    ) -> list[SimRun]:
        name, _ = self.resolve_actor(actor_id)
        found = [
            run
            for run in self.runs.values()
            if run.actor == name
            and (status is None or run.status in status)
            and (started_after is None or run.started_at >= started_after)
            and (started_before is None or run.started_at <= started_before)
            and self.visible(run)
        ]
        found.sort(key=lambda run: (run.started_at, run.sequence), reverse=desc)
        return found

    # ------------------------------------------------------------------ what was served

    def served_plan(self, run_id: str) -> datasets.DatasetPlan:
        """What the run's dataset holds now (all of it once the run ended)."""
        run = self.runs[run_id]
        now = asyncio.get_running_loop().time()
        return datasets.served_plan(
            self.config, run.actor, run.id, run.input, run.available_items(now)
        )

    # ------------------------------------------------------------------ control

    def stats(self) -> dict[str, Any]:
        counters = self.counters
        by_status = collections.Counter(run.status for run in list(self.runs.values()))
        return {
            "requests": dict(counters.requests),
            "starts": counters.starts,
            "aborts": counters.aborts,
            "abortRequests": counters.abort_requests,
            "inputReads": counters.input_reads,
            "lateStarts": counters.late_starts,
            "redirects": counters.redirects,
            "faults": dict(counters.faults),
            "rejected": dict(counters.rejected),
            "runs": {"total": len(self.runs), "active": len(self.active), "byStatus": by_status},
            "longPolls": {"active": counters.long_polls_active, "peak": counters.long_polls_peak},
            "activePeak": counters.active_peak,
            "activePeakByToken": {str(k): v for k, v in self.active_peaks.items()},
            "foreignTokenRequests": counters.foreign_token_requests,
        }

    def run_summaries(self) -> list[dict[str, Any]]:
        return [
            {
                "id": run.id,
                "actor": run.actor,
                "status": run.status,
                "plannedOutcome": run.plan.outcome,
                "durationSeconds": run.plan.duration_seconds,
                "itemCount": run.final_item_count,
                "stoppedAtMaxCharge": run.plan.stopped_at_max_charge,
                "startedAt": iso(run.started_at),
                "finishedAt": iso(run.finished_at) if run.finished_at else None,
                "finishedAtEpoch": run.finished_epoch,
                "tokenTag": run.token_tag,
                "requestTokenTags": {str(k): v for k, v in run.request_tags.items()},
                "usageTotalUsd": run.usage_total_usd(),
                "chargedEventCounts": run.charged_event_counts(),
            }
            for run in list(self.runs.values())
        ]

    def reset(self) -> None:
        """Forget every run and zero the counters; the configuration stays."""
        self.wake_all()
        for run in self.runs.values():
            for timer in run.timers:
                timer.cancel()
        self.runs.clear()
        self.by_dataset.clear()
        self.active.clear()
        self.counters = Counters()
        self.active_peaks.clear()
        self.fault_rng = random.Random(f"{self.config.seed}:faults")

    def wake_all(self) -> None:
        """Answer every pending long-poll now (shutdown, reset)."""
        for run in self.runs.values():
            run.done.set()

    def apply_config(self, patch: Mapping[str, Any]) -> None:
        self.config.apply(patch)
