"""Actions on jobs, one or many: preview (count and spend estimate), apply, audit.

An action is a name, the statuses it applies to and the queue function that does it to
one job (``queue.jobs.retry`` / ``queue.jobs.cancel``, exactly as ``jobs retry|cancel``:
this module knows nothing of how they lock or notify). Adding one (aborting runs, once
the run ledger lands) is one more :class:`Action` with its own target.

* **Selection**: explicit ids (at most :data:`MAX_SELECTED`), or everything matching a
  jobs filter. A filter selection is bound to a snapshot (the database time at preview):
  jobs created later are not touched, and a preview's count cannot silently grow.
* **Preview**: how many jobs the action would change (at most :data:`MAX_JOBS` per
  action, oldest first) and, for a retry, an estimate of the Apify spend (see
  :func:`estimate`). It changes nothing, and hands out the action's id.
* **Apply**: in batches of :data:`BATCH` jobs, each job through the queue function on
  the console's write path (one connection, one action at a time). The audit row is
  written first, with the action's id as its key: applying the same action again (a
  double click, a reload, a retried request) finds it and changes nothing. Its counts
  are brought up to date after every batch, and it ends ``done`` or ``failed``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs
from kairo_ingest.console import filters, security
from kairo_ingest.db import dberrors
from kairo_ingest.domain import registry
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)

MAX_SELECTED = 1000
MAX_JOBS = 10_000
BATCH = 100
RUNS_PER_SOURCE = 5  # the recent costed runs a source's estimate averages
RUNS_PER_ACTOR = 20  # the same, per actor, for a source with no cost yet
PROBLEMS_KEPT = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Action:
    name: str
    verb: str
    target: str
    eligible: tuple[str, ...]
    spends: bool
    apply_one: Callable[[sa_async.AsyncEngine, uuid.UUID], Awaitable[object | None]]


ACTIONS: dict[str, Action] = {
    "retry": Action("retry", "Retry", "jobs", ("failed", "cancelled"), True, queue_jobs.retry),
    "cancel": Action("cancel", "Cancel", "jobs", ("pending", "running"), False, queue_jobs.cancel),
}


def action_named(name: str) -> Action:
    try:
        return ACTIONS[name]
    except KeyError:
        raise errors.UsageError(
            f"unknown action {name[:40]!r}; one of: {', '.join(ACTIONS)}"
        ) from None


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """Explicit ids, or a filter's parameters and the snapshot time (jobs, or runs for an
    abort)."""

    ids: tuple[uuid.UUID, ...] | None = None
    params: Mapping[str, str] | None = None
    snapshot: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        if self.ids is not None:
            return {"ids": [str(i) for i in self.ids]}
        return {
            "filter": dict(self.params or {}),
            "snapshot": self.snapshot.isoformat() if self.snapshot else None,
        }

    @classmethod
    def of_ids(cls, raw: Sequence[str], noun: str = "job") -> Selection:
        """The ids of selected ``noun``s (jobs, or runs for an abort), deduplicated."""
        if not raw:
            raise errors.UsageError(f"select at least one {noun}")
        if len(raw) > MAX_SELECTED:
            raise errors.UsageError(f"select at most {MAX_SELECTED} {noun}s, or act on a filter")
        ids = tuple(dict.fromkeys(filters.as_uuid(r, f"{noun} id") for r in raw))
        return cls(ids=ids)


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """The Apify spend a retry is expected to cause; see :func:`estimate`."""

    usd: float
    brands: int
    source_runs: int
    sources_without_history: int

    def to_json(self) -> dict[str, Any]:
        return {
            "usd": round(self.usd, 6),
            "brands": self.brands,
            "source_runs": self.source_runs,
            "sources_without_history": self.sources_without_history,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Preview:
    action: Action
    selection: Selection
    matched: int
    capped: bool
    estimate: Estimate | None
    action_id: uuid.UUID

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action.name,
            "action_id": str(self.action_id),
            "selection": self.selection.to_json(),
            "matched": self.matched,
            "capped": self.capped,
            "max_jobs": MAX_JOBS,
            "estimate": self.estimate.to_json() if self.estimate else None,
        }


NOW = sa.text("SELECT now() AS now")


async def _where(
    conn: sa_async.AsyncConnection, action: Action, selection: Selection
) -> tuple[list[str], dict[str, Any]] | None:
    """The conditions of the jobs this action would change; None when nothing can match."""
    params: dict[str, Any] = {"eligible": list(action.eligible)}
    where = ["status = ANY(:eligible)"]
    if selection.ids is not None:
        where.append("id = ANY(:ids)")
        params["ids"] = list(selection.ids)
        return where, params
    job_filter = await filters.job_filter(conn, selection.params or {})
    if job_filter.brand_ids == ():
        return None
    where += job_filter.where(params)
    if selection.snapshot is not None:
        where.append("created_at <= :snapshot")
        params["snapshot"] = selection.snapshot
    return where, params


async def preview(conn: sa_async.AsyncConnection, action: Action, selection: Selection) -> Preview:
    if selection.ids is None and selection.snapshot is None:
        snapshot = (await conn.execute(NOW)).scalar_one()
        selection = dataclasses.replace(selection, snapshot=snapshot)
    found = await _where(conn, action, selection)
    matched = 0
    estimated = None
    if found is not None:
        where, params = found
        counted = sa.text(
            f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE {' AND '.join(where)} LIMIT :cap) AS m"
        )
        matched = int((await conn.execute(counted, params | {"cap": MAX_JOBS + 1})).scalar_one())
        if action.spends and matched:
            estimated = await estimate(conn, where, params)
    elif action.spends:
        estimated = Estimate(0.0, 0, 0, 0)
    return Preview(
        action=action,
        selection=selection,
        matched=min(matched, MAX_JOBS),
        capped=matched > MAX_JOBS,
        estimate=estimated,
        action_id=uuid.uuid4(),
    )


async def estimate(
    conn: sa_async.AsyncConnection, where: list[str], params: dict[str, Any]
) -> Estimate:
    """What a retry of these jobs is expected to cost on Apify.

    A retried compile job runs each enabled source of its brand once, and a brand has at
    most one pending compile job (a second retry of the same brand is refused), so the
    estimate counts each brand once: the sum, over the enabled sources of the selected
    jobs' brands, of the mean ``usage_total_usd`` of the source's last
    :data:`RUNS_PER_SOURCE` runs with a reported cost; a source without one takes the mean
    of its actor's last :data:`RUNS_PER_ACTOR` costed runs, and one whose actor has none
    counts 0 (and is counted in ``sources_without_history``). Sources still fresh are
    reused at no cost, so the figure is an upper estimate.
    """
    statement = sa.text(
        f"""
        WITH picked AS (
            SELECT DISTINCT brand_id FROM (
                SELECT brand_id FROM jobs WHERE {" AND ".join(where)}
                ORDER BY created_at, id LIMIT :cap
            ) AS j
            WHERE brand_id IS NOT NULL
        )
        SELECT s.brand_id, s.platform, s.capability, c.usd, c.n
        FROM picked p
        JOIN source_connections s ON s.brand_id = p.brand_id AND s.enabled
        LEFT JOIN LATERAL (
            SELECT avg(x.usage_total_usd) AS usd, count(*) AS n FROM (
                SELECT r.usage_total_usd FROM apify_runs r
                WHERE r.source_connection_id = s.id AND r.usage_total_usd IS NOT NULL
                ORDER BY r.created_at DESC LIMIT :per_source
            ) AS x
        ) AS c ON true
        """
    )
    rows = (
        await conn.execute(statement, params | {"cap": MAX_JOBS, "per_source": RUNS_PER_SOURCE})
    ).all()
    brands = {r.brand_id for r in rows}
    total = decimal.Decimal(0)
    missing: dict[str, int] = {}
    without = 0
    for row in rows:
        if row.n:
            total += decimal.Decimal(row.usd)
            continue
        spec = registry.find_spec(row.platform, row.capability)
        if spec is None:
            without += 1
        else:
            missing[spec.actor_id] = missing.get(spec.actor_id, 0) + 1
    if missing:
        per_actor = sa.text(
            """
            SELECT avg(x.usage_total_usd) AS usd, count(*) AS n FROM (
                SELECT usage_total_usd FROM apify_runs
                WHERE actor_id = :actor AND usage_total_usd IS NOT NULL
                ORDER BY created_at DESC LIMIT :per_actor
            ) AS x
            """
        )
        for actor, sources in missing.items():
            row = (
                await conn.execute(per_actor, {"actor": actor, "per_actor": RUNS_PER_ACTOR})
            ).one()
            if row.n:
                total += decimal.Decimal(row.usd) * sources
            else:
                without += sources
    return Estimate(float(total), len(brands), len(rows), without)


@dataclasses.dataclass
class Outcome:
    action_id: uuid.UUID
    matched: int = 0
    changed: int = 0
    unchanged: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)
    replayed: bool = False  # the action had run already: nothing was done this time


AUDIT_INSERT = sa.text(
    """
    INSERT INTO console_audit (id, actor, via, client, action, target, selection, estimate_usd)
    VALUES (:id, :actor, :via, :client, :action, :target, CAST(:selection AS jsonb),
            :estimate_usd)
    ON CONFLICT (id) DO NOTHING
    RETURNING id
    """
)
AUDIT_PROGRESS = sa.text(
    "UPDATE console_audit SET matched = :matched, changed = :changed, unchanged = :unchanged "
    "WHERE id = :id"
)
AUDIT_END = sa.text(
    "UPDATE console_audit SET matched = :matched, changed = :changed, unchanged = :unchanged, "
    "state = :state, error = :error, finished_at = now() WHERE id = :id"
)
AUDIT_COUNTS = sa.text("SELECT matched, changed, unchanged FROM console_audit WHERE id = :id")


async def apply(
    engine: sa_async.AsyncEngine,
    action: Action,
    selection: Selection,
    *,
    action_id: uuid.UUID,
    principal: security.Principal,
    client: str | None,
    estimate_usd: float | None = None,
    direct: bool = False,
) -> Outcome:
    """Run the action once: a second call with the same ``action_id`` changes nothing.

    ``direct``: call the queue function on each selected id whatever its status, so that
    a refusal comes back in the queue's own words (the single-job buttons).
    """
    outcome = Outcome(action_id)
    with dberrors.mapped("console_action"):
        async with engine.begin() as conn:
            inserted = (
                await conn.execute(
                    AUDIT_INSERT,
                    {
                        "id": action_id,
                        "actor": principal.identity,
                        "via": principal.via,
                        "client": client,
                        "action": action.name,
                        "target": action.target,
                        "selection": json.dumps(selection.to_json()),
                        "estimate_usd": estimate_usd,
                    },
                )
            ).first()
            if inserted is None:
                counts = (await conn.execute(AUDIT_COUNTS, {"id": action_id})).one()
                outcome.matched, outcome.changed, outcome.unchanged = counts
                outcome.replayed = True
                return outcome
    log.info(
        "console_action_started",
        action=action.name,
        action_id=str(action_id),
        actor=principal.identity,
        client=client,
    )
    state, error = "done", None
    try:
        if direct and selection.ids is not None:
            for job_id in selection.ids:
                outcome.matched += 1
                await _one(engine, action, job_id, outcome)
        else:
            await _run(engine, action, selection, outcome)
    except Exception as exc:
        state, error = "failed", errors.describe(exc)[:500]
        raise
    finally:
        with dberrors.mapped("console_action"):
            async with engine.begin() as conn:
                await conn.execute(AUDIT_END, _counts(outcome) | {"state": state, "error": error})
        log.info(
            "console_action_finished",
            action=action.name,
            action_id=str(action_id),
            state=state,
            changed=outcome.changed,
            unchanged=outcome.unchanged,
        )
    return outcome


def _counts(outcome: Outcome) -> dict[str, Any]:
    return {
        "id": outcome.action_id,
        "matched": outcome.matched,
        "changed": outcome.changed,
        "unchanged": outcome.unchanged,
    }


async def _run(
    engine: sa_async.AsyncEngine, action: Action, selection: Selection, outcome: Outcome
) -> None:
    after: tuple[dt.datetime, uuid.UUID] | None = None
    while outcome.matched < MAX_JOBS:
        with dberrors.mapped("console_action"):
            async with engine.connect() as conn:
                found = await _where(conn, action, selection)
                if found is None:
                    return
                where, params = found
                if after is not None:
                    where = [*where, "(created_at, id) > (:after_created_at, :after_id)"]
                    params |= {"after_created_at": after[0], "after_id": after[1]}
                batch = (
                    await conn.execute(
                        sa.text(
                            f"SELECT id, created_at FROM jobs WHERE {' AND '.join(where)} "
                            "ORDER BY created_at, id LIMIT :batch"
                        ),
                        params | {"batch": min(BATCH, MAX_JOBS - outcome.matched)},
                    )
                ).all()
        if not batch:
            return
        for row in batch:
            outcome.matched += 1
            await _one(engine, action, row.id, outcome)
        after = (batch[-1].created_at, batch[-1].id)
        with dberrors.mapped("console_action"):
            async with engine.begin() as conn:
                await conn.execute(AUDIT_PROGRESS, _counts(outcome))


async def _one(
    engine: sa_async.AsyncEngine, action: Action, job_id: uuid.UUID, outcome: Outcome
) -> None:
    try:
        job = await action.apply_one(engine, job_id)
    except (errors.UsageError, errors.DatabaseError) as exc:
        # Moved on since the preview, refused by the queue (a brand's second pending job),
        # or its row stayed locked past the lock timeout: not changed, and said so.
        outcome.unchanged += 1
        if len(outcome.problems) < PROBLEMS_KEPT:
            outcome.problems.append(errors.describe(exc))
        return
    if job is None:
        outcome.unchanged += 1
    else:
        outcome.changed += 1
