"""The LISTEN connection: a look after every (re)connect, since what was sent meanwhile is lost."""

from __future__ import annotations

import asyncio
import random

import asyncpg
import queue_testkit as kit

from kairo_ingest.db import engine as db_engine
from kairo_ingest.worker import listener as listener_module
from support import outcomes


async def test_every_connect_is_followed_by_one_look_and_a_lost_connection_comes_back(
    db_url: str,
) -> None:
    """A notification sent while the listener was disconnected is gone; so after every
    (re)connect the worker is woken once with an empty payload ("look now"), and the
    notifications that follow arrive as they are."""
    seen: list[str] = []
    listener = listener_module.Listener(
        db_engine.plain_dsn(db_url),
        seen.append,
        ping_interval_seconds=0.2,
        reconnect_base_seconds=0.01,
        reconnect_cap_seconds=0.05,
        rng=random.Random(7),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    admin = await asyncpg.connect(db_engine.plain_dsn(db_url))
    try:
        await outcomes.within(kit.BOUND_SECONDS, listener.listening.wait(), "the first connect")
        assert seen == [""], "the first connect is followed by one look"

        await admin.execute("SELECT pg_notify('kairo_jobs', 'ping')")

        async def notified() -> bool:
            return seen == ["", "ping"]

        await kit.wait_until(notified)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert killed == 1  # the listener's connection

        async def back() -> bool:
            return listener.connects == 2 and listener.listening.is_set()

        await kit.wait_until(back)
        assert seen == ["", "ping", ""], "the reconnect is followed by one look too"
    finally:
        stop.set()
        await admin.close()
        await outcomes.within(kit.BOUND_SECONDS, task, "the listener's stop")
