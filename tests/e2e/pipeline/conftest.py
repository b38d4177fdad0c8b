from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import pipeline_e2e_kit as kit
import pytest


@pytest.fixture
async def processes(tmp_path: pathlib.Path) -> AsyncIterator[kit.Processes]:
    procs = kit.Processes(tmp_path)
    try:
        yield procs
    finally:
        await procs.kill_all()


@pytest.fixture
async def simulator(processes: kit.Processes) -> AsyncIterator[kit.Simulator]:
    async with kit.simulator_process(processes) as sim:
        yield sim
