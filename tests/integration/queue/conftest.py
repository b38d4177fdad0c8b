from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import queue_testkit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import clock as clock_module
from kairo_ingest.worker import context, core


@pytest.fixture
def make_worker(engine: sa_async.AsyncEngine, db_url: str) -> queue_testkit.WorkerFactory:
    """Build a Worker on the test database with short timings; keyword overrides win."""

    def factory(handlers: Mapping[str, context.Handler], **overrides: Any) -> core.Worker:
        clock = overrides.pop("clock", clock_module.SYSTEM)
        rng = overrides.pop("rng", None)
        worker_config = queue_testkit.worker_config(db_url, **overrides)
        return core.Worker(engine, handlers, worker_config, clock=clock, rng=rng)

    return factory
