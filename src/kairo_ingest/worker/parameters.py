"""Every setting of a worker in one frozen value, built the same way everywhere."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from kairo_ingest import config, errors


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How one worker process claims, runs, keeps and hands back jobs.

    ``heartbeat_interval_seconds`` defaults to a sixth of the lease and
    ``heartbeat_timeout_seconds`` to half the interval: the keeper gives a lease up once
    it is ``lease - (interval + timeout)`` (three quarters of the lease) old, which
    tolerates two failed beats in a row and still ends the attempt before another worker
    can claim the job.

    ``shutdown_grace_seconds`` bounds the whole exit after a stop request (worker/shutdown.py);
    ``cancel_timeout_seconds`` bounds, inside it, how long cancelled handlers may unwind.
    """

    owner: str
    concurrency: int
    lease_seconds: float
    poll_interval_seconds: float
    listen: bool
    dsn_for_listen: str | None
    retry_base_seconds: float
    retry_cap_seconds: float
    snooze_seconds: float
    reap_interval_seconds: float
    retention: dt.timedelta | None
    shutdown_grace_seconds: float
    heartbeat_interval_seconds: float | None = None
    heartbeat_timeout_seconds: float | None = None
    stats_interval_seconds: float = 15.0
    prune_interval_seconds: float = 3600.0
    cancel_timeout_seconds: float = 10.0
    raw_retention: dt.timedelta | None = None  # None: raw items are kept forever
    raw_partition_interval_seconds: float = 3600.0
    max_interruptions: int = 10  # queue/endings.py: Caps
    max_snoozes: int = 100
    # Deferred jobs are made ready when due this often (None: every poll interval, so a
    # job whose backoff is over waits at most as long as a new job without a NOTIFY).
    promote_interval_seconds: float | None = None
    forget_workers_interval_seconds: float = 3600.0
    tune_gc: bool = True  # see worker/gc_tuning.py

    @classmethod
    def from_settings(
        cls,
        settings: config.Settings,
        *,
        owner: str,
        concurrency: int | None = None,
        dsn_for_listen: str | None = None,
        **overrides: Any,
    ) -> WorkerConfig:
        """The worker's settings from the process settings; keyword overrides win."""
        built = cls(
            owner=owner,
            concurrency=concurrency or settings.concurrency,
            lease_seconds=settings.lease_seconds,
            poll_interval_seconds=settings.poll_interval_seconds,
            listen=settings.listen_notify,
            dsn_for_listen=dsn_for_listen,
            retry_base_seconds=settings.retry_base_seconds,
            retry_cap_seconds=settings.retry_cap_seconds,
            snooze_seconds=settings.snooze_seconds,
            reap_interval_seconds=settings.reap_interval_seconds,
            retention=settings.finished_job_retention,
            shutdown_grace_seconds=settings.shutdown_grace_seconds,
            raw_retention=settings.raw_retention,
            max_interruptions=settings.max_interruptions,
            max_snoozes=settings.max_snoozes,
        )
        return dataclasses.replace(built, **overrides)

    @property
    def promote_every_seconds(self) -> float:
        if self.promote_interval_seconds is not None:
            return self.promote_interval_seconds
        return self.poll_interval_seconds

    @property
    def beat_interval_seconds(self) -> float:
        if self.heartbeat_interval_seconds is not None:
            return self.heartbeat_interval_seconds
        return self.lease_seconds / 6.0

    @property
    def beat_timeout_seconds(self) -> float:
        if self.heartbeat_timeout_seconds is not None:
            return self.heartbeat_timeout_seconds
        return self.beat_interval_seconds / 2.0

    def validate(self) -> None:
        """The rules between settings (KAIRO_CONCURRENCY and KAIRO_LEASE_SECONDS are
        checked once, in :mod:`kairo_ingest.config`)."""
        if not 0 < self.beat_interval_seconds <= self.lease_seconds / 3.0:
            raise errors.ConfigError("heartbeats must run at least every third of the lease")
        if not 0 < self.beat_timeout_seconds < self.beat_interval_seconds:
            raise errors.ConfigError("a heartbeat's timeout must be shorter than its interval")
        if self.max_interruptions < 1 or self.max_snoozes < 1:
            raise errors.ConfigError("the caps on interruptions and snoozes must be at least 1")
