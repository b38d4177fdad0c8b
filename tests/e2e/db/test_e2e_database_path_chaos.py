"""A flaky path to PostgreSQL under a real worker: a TCP proxy (``tcp_proxy_kit``) between
the worker and the server resets connections at random and twice goes dark for a few
seconds (every open connection reset, new ones refused), while jobs are enqueued before,
during and after. Every job succeeds on attempt 1, none waits for its lease to run out,
and the simulator saw one run per source.

Before, random resets alone passed (every statement retried, nothing reopened under a
refusal), but the dark spells did not: a pooled connection reopened while refused raised
an untranslated ConnectionRefusedError that failed its source and spent the attempt, and
a claim whose answer was lost left its jobs to the reaper a lease later.
"""

from __future__ import annotations

import asyncio
import pathlib
import random

import outage_kit
import pytest
from sqlalchemy.engine import make_url

import tcp_proxy_kit
from support import outcomes

pytestmark = pytest.mark.slow

DARK_SPELLS = 2
DARK_SECONDS = 4.0


async def test_random_resets_and_two_dark_spells_cost_no_attempt_and_no_wait_for_the_reaper(
    db_url: str, tmp_path: pathlib.Path
) -> None:
    url = make_url(db_url)
    proxy = tcp_proxy_kit.TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    through_proxy = url.set(port=port).render_as_string(hide_password=False)
    procs: list[asyncio.subprocess.Process] = []
    sim: outage_kit.Simulator | None = None
    stop_chaos = asyncio.Event()
    chaos: asyncio.Task[None] | None = None
    try:
        sim = await outage_kit.start_simulator(tmp_path / "simulator.log")
        procs.append(sim.proc)
        before = await outage_kit.add_brands(db_url, 8, "before")
        during = await outage_kit.add_brands(db_url, 3, "during")
        after = await outage_kit.add_brands(db_url, 3, "after")
        total = len(before) + len(during) + len(after)
        await outage_kit.enqueue(db_url, before)
        env = outage_kit.worker_env(through_proxy, sim.base_url, tmp_path)
        worker = await outage_kit.start_worker(env, tmp_path)
        procs.append(worker)

        async def flowing() -> bool:
            found = await outage_kit.counts(db_url)
            return found.get("running", 0) >= 3 and len(await sim.runs()) >= 3

        await outage_kit.poll(flowing, "jobs running with runs in flight")
        chaos = asyncio.create_task(
            proxy.chaos(
                stop_chaos,
                rng=random.Random(18),
                mean_reset_interval_seconds=0.7,
                dark_spells=DARK_SPELLS,
                dark_seconds=DARK_SECONDS,
                first_dark_after_seconds=1.0,
                dark_every_seconds=6.0,
            )
        )

        async def first_spell_begun() -> bool:
            return proxy.dark_spells >= 1

        await outage_kit.poll(first_spell_begun, "the first dark spell")
        await outage_kit.enqueue(db_url, during)  # straight to the server: the proxy is dark

        async def spells_over() -> bool:
            return proxy.dark_spells >= DARK_SPELLS and not proxy.dark

        await outage_kit.poll(spells_over, "both dark spells")
        await outage_kit.enqueue(db_url, after)
        await outage_kit.wait_all_finished(db_url, total, worker, tmp_path)
        stop_chaos.set()
        await chaos
        figures = await outage_kit.assert_every_job_succeeded_on_its_first_attempt(
            db_url, sim, total, tmp_path
        )
        assert proxy.resets > 0
        print(  # the report's figures
            f"database path chaos: {figures}, connections {proxy.connections}, "
            f"resets {proxy.resets}, dark spells {proxy.dark_spells}"
        )
    finally:
        stop_chaos.set()
        if chaos is not None and not chaos.done():
            await outcomes.within(30, chaos)
        await outage_kit.stop(procs)
        if sim is not None:
            await sim.aclose()
        await proxy.stop()
