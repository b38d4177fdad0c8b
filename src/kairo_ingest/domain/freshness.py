"""Refresh or reuse: the freshness rule of the compile job, as a pure function."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum


class Action(enum.StrEnum):
    REFRESH = "refresh"
    REUSE = "reuse"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    run_age_hours: float | None = None


def decide(
    *,
    force_refresh: bool,
    newest_succeeded_finished_at: dt.datetime | None,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> Decision:
    """Force refresh wins; otherwise reuse the newest succeeded run when its age <= TTL.

    Failed runs never reach this function: the caller only looks up SUCCEEDED runs.
    ``now`` is the database's clock, read once per job.
    """
    if force_refresh:
        return Decision(Action.REFRESH, "force_refresh")
    if newest_succeeded_finished_at is None:
        return Decision(Action.REFRESH, "no_succeeded_run")
    age = now - newest_succeeded_finished_at
    hours = round(age.total_seconds() / 3600, 3)
    if age <= ttl:
        return Decision(Action.REUSE, "fresh_run_within_ttl", hours)
    return Decision(Action.REFRESH, "run_older_than_ttl", hours)
