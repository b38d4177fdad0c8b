"""Test doubles shared by the Apify client's unit tests."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

BASE = "https://api.apify.test"
TOKEN = "apify_api_SuperSecretToken1234567890"


def run_json(run_id: str = "run1", status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    data = {
        "id": run_id,
        "actId": "act1",
        "status": status,
        "statusMessage": f"status {status}",
        "startedAt": "2026-01-07T12:00:00.000Z",
        "finishedAt": None if status in ("READY", "RUNNING") else "2026-01-07T12:01:00.000Z",
        "defaultDatasetId": "ds1",
    }
    data.update(extra)
    return {"data": data}


@dataclasses.dataclass
class SleepRecorder:
    """Stands in for asyncio.sleep: records the backoff asked for, waits for nothing."""

    calls: list[float] = dataclasses.field(default_factory=list)
    clock: FakeClock | None = None  # moved forward by each sleep when set

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds
        await asyncio.sleep(0)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now
