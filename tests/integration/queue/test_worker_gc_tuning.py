"""A running worker has its collector tuned (worker/gc_tuning.py).

At concurrency 800 a quarter of the worker's CPU samples were cyclic garbage collections
set off by each job's few allocations; the worker freezes its start-up objects and raises
the young generation's threshold when it starts. Checked as settings, not as time.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
import queue_testkit

from kairo_ingest.worker import gc_tuning
from support import noop


@pytest.fixture
def fresh_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("fresh_gc")
async def test_a_running_worker_tunes_the_collector(
    make_worker: queue_testkit.WorkerFactory,
) -> None:
    worker = make_worker({noop.NOOP_KIND: noop.noop})
    await worker.run(drain=True)
    assert gc.get_threshold()[0] == gc_tuning.GEN0_THRESHOLD
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("fresh_gc")
async def test_it_can_be_turned_off(make_worker: queue_testkit.WorkerFactory) -> None:
    worker = make_worker({noop.NOOP_KIND: noop.noop}, tune_gc=False)
    await worker.run(drain=True)
    assert gc.get_threshold()[0] == 700
    assert gc.get_freeze_count() == 0


def test_it_never_lowers_a_higher_threshold(fresh_gc: None) -> None:
    gc.set_threshold(50_000, 10, 10)
    gc_tuning.tune()
    assert gc.get_threshold() == (50_000, 10, 10)
