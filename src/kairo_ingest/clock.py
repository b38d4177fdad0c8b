"""The one place that reads the monotonic clock.

Deadlines are monotonic instants (``clock.monotonic() + seconds``). Code that waits
takes a :class:`Clock` so tests can inject a fake one; wall-clock times for leases
come from the database's ``now()``, never from here.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM = SystemClock()


@dataclasses.dataclass(frozen=True, slots=True)
class Deadline:
    """A monotonic instant. ``remaining()`` is never negative."""

    at: float
    clock: Clock = SYSTEM

    @classmethod
    def after(cls, seconds: float, clock: Clock = SYSTEM) -> Deadline:
        return cls(clock.monotonic() + seconds, clock)

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock.monotonic())

    def expired(self) -> bool:
        return self.clock.monotonic() >= self.at
