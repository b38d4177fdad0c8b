"""Aborting Apify runs from the console, many at once: preview (how many), apply, audit.

The console does not call Apify: it marks each run for the ledger
(``db/ledger_queries.request_abort``: ``apify_runs.operator_abort_requested_at``, and a NOTIFY
that wakes the ledger). From then on no job follows or wants the run, and the ledger
service aborts it with the token of the account that started it and records its end and
cost, as it does for a cancelled job's run.

* **Selection**: explicit run ids (at most :data:`actions.MAX_SELECTED`), or every run
  matching a runs filter (``/runs``'s), bound to the preview's snapshot: runs created
  later are not touched. Only runs that have not ended and were not asked already count;
  they are found through ``ix_apify_runs_unended``, however many runs have ended.
* **Once**: the audit row is written first with the action's id as its key (as the jobs'
  bulk actions, ``actions.py``): applying the same action again changes nothing. Marking
  a run twice is a no-op too (``request_abort`` skips runs already asked).
* **Batched**: :data:`BATCH` runs per transaction, at most :data:`MAX_RUNS` per action.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs
from kairo_ingest.console import actions, filters, security
from kairo_ingest.db import dberrors, ledger_queries, tables

log = logs.get(__name__)

MAX_RUNS = 10_000
BATCH = 100
ACTION = "abort"
TARGET = "runs"
# The runs an abort may still change: not ended, not asked already. The first condition
# is ix_apify_runs_unended's predicate, word for word.
ABORTABLE = [
    f"status NOT IN {tables.RUN_ENDED_SQL}",
    "operator_abort_requested_at IS NULL",
]


# The runs to abort are chosen like the jobs of a bulk action: explicit ids or a filter.
Selection = actions.Selection


# The runs not ended, chosen first through ix_apify_runs_unended, then filtered. (Filtered
# in one scan, PostgreSQL multiplies the selectivities of ``status <> ALL`` and expects a
# few percent of all runs not to have ended: with an actor's filter on top it then reads
# the whole table instead.)
_ABORTABLE_RUNS = f"""WITH live AS MATERIALIZED (
    SELECT id, status, actor_id, account, source_connection_id, created_at FROM apify_runs
    WHERE {" AND ".join(ABORTABLE)}
)"""


def where(selection: Selection) -> tuple[list[str], dict[str, Any]]:
    """The conditions (over ``live``: the runs not ended and not asked already) of the runs
    this abort would mark."""
    params: dict[str, Any] = {}
    conditions = ["true"]
    if selection.ids is not None:
        conditions.append("id = ANY(:ids)")
        params["ids"] = list(selection.ids)
        return conditions, params
    conditions += filters.run_filter(selection.params or {}).where(params)
    if selection.snapshot is not None:
        conditions.append("created_at <= :snapshot")
        params["snapshot"] = selection.snapshot
    return conditions, params


def count_statement(conditions: list[str]) -> sa.TextClause:
    return sa.text(
        f"{_ABORTABLE_RUNS} SELECT count(*) FROM (SELECT 1 FROM live "
        f"WHERE {' AND '.join(conditions)} LIMIT :cap) AS m"
    )


def batch_statement(conditions: list[str]) -> sa.TextClause:
    return sa.text(
        f"{_ABORTABLE_RUNS} SELECT id FROM live WHERE {' AND '.join(conditions)} LIMIT :batch"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Preview:
    selection: Selection
    matched: int
    capped: bool
    action_id: uuid.UUID

    def to_json(self) -> dict[str, Any]:
        return {
            "action": ACTION,
            "action_id": str(self.action_id),
            "selection": self.selection.to_json(),
            "matched": self.matched,
            "capped": self.capped,
            "max_runs": MAX_RUNS,
        }


async def preview(conn: sa_async.AsyncConnection, selection: Selection) -> Preview:
    if selection.ids is None and selection.snapshot is None:
        snapshot = (await conn.execute(actions.NOW)).scalar_one()
        selection = dataclasses.replace(selection, snapshot=snapshot)
    conditions, params = where(selection)
    counted = await conn.execute(count_statement(conditions), params | {"cap": MAX_RUNS + 1})
    matched = int(counted.scalar_one())
    return Preview(selection, min(matched, MAX_RUNS), matched > MAX_RUNS, uuid.uuid4())


async def apply(
    engine: sa_async.AsyncEngine,
    selection: Selection,
    *,
    action_id: uuid.UUID,
    principal: security.Principal,
    client: str | None,
) -> actions.Outcome:
    """Mark the selected runs for the ledger to abort, once per ``action_id``."""
    outcome = actions.Outcome(action_id)
    with dberrors.mapped("console_action"):
        async with engine.begin() as conn:
            inserted = (
                await conn.execute(
                    actions.AUDIT_INSERT,
                    {
                        "id": action_id,
                        "actor": principal.identity,
                        "via": principal.via,
                        "client": client,
                        "action": ACTION,
                        "target": TARGET,
                        "selection": json.dumps(selection.to_json()),
                        "estimate_usd": None,
                    },
                )
            ).first()
            if inserted is None:
                counts = (await conn.execute(actions.AUDIT_COUNTS, {"id": action_id})).one()
                outcome.matched, outcome.changed, outcome.unchanged = counts
                outcome.replayed = True
                return outcome
    log.info(
        "console_action_started",
        action=ACTION,
        action_id=str(action_id),
        actor=principal.identity,
        client=client,
    )
    state, error = "done", None
    try:
        await _mark(engine, selection, outcome)
    except Exception as exc:
        state, error = "failed", errors.describe(exc)[:500]
        raise
    finally:
        with dberrors.mapped("console_action"):
            async with engine.begin() as conn:
                await conn.execute(
                    actions.AUDIT_END,
                    {
                        "id": action_id,
                        "matched": outcome.matched,
                        "changed": outcome.changed,
                        "unchanged": outcome.unchanged,
                        "state": state,
                        "error": error,
                    },
                )
        log.info(
            "console_action_finished",
            action=ACTION,
            action_id=str(action_id),
            state=state,
            changed=outcome.changed,
        )
    return outcome


async def _mark(
    engine: sa_async.AsyncEngine, selection: Selection, outcome: actions.Outcome
) -> None:
    """Batches of runs, each marked in its own transaction; a marked run leaves the
    selection (it was asked), so the next batch picks the next ones."""
    if selection.ids is not None:
        outcome.matched = len(selection.ids)
    conditions, params = where(selection)
    while outcome.changed < MAX_RUNS:
        with dberrors.mapped("console_action"):
            async with engine.begin() as conn:
                size = min(BATCH, MAX_RUNS - outcome.changed)
                ids = list(
                    (await conn.execute(batch_statement(conditions), params | {"batch": size}))
                    .scalars()
                    .all()
                )
                marked = await ledger_queries.request_abort(conn, ids)
        outcome.changed += marked
        if selection.ids is None:
            outcome.matched += len(ids)
        if len(ids) < size or marked == 0:
            break
    outcome.unchanged = outcome.matched - outcome.changed
