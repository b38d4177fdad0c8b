"""The worker's periodic units: a failed round is logged and retried, never the unit's end."""

from __future__ import annotations

import asyncio
import random

from kairo_ingest import errors
from kairo_ingest.worker import maintenance
from support import outcomes


async def test_a_failed_round_is_retried_and_the_unit_goes_on() -> None:
    """As during a database restart: the reaper's round fails, and it runs again (after
    the loop's backoff, never longer than its interval) instead of stopping for good."""
    rounds: list[str] = []
    stop = asyncio.Event()

    async def work() -> None:
        rounds.append("round")
        if len(rounds) <= 2:
            raise errors.DatabaseUnavailableError("the database is restarting")
        if len(rounds) == 4:
            stop.set()

    unit = maintenance.every("reap", 0.01, work, stop, random.Random(3))
    await outcomes.within(10, unit, "the unit")
    assert len(rounds) == 4


async def test_a_unit_stops_as_soon_as_the_worker_does() -> None:
    stop = asyncio.Event()
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1
        stop.set()

    await outcomes.within(10, maintenance.every("stats", 3600.0, work, stop, random.Random(3)))
    assert rounds == 1
