from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import queue_testkit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.worker import runner


@pytest.fixture
def make_worker(engine: sa_async.AsyncEngine, db_url: str) -> queue_testkit.WorkerFactory:
    """Build a Worker on the test database with short timings; keyword overrides win."""

    def factory(handlers: Mapping[str, runner.Handler], **overrides: Any) -> runner.Worker:
        return runner.Worker(engine, handlers, **queue_testkit.worker_options(db_url, **overrides))

    return factory
