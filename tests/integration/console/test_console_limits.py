"""The console has the health server's limits: inside ``run`` it shares the worker's loop
and file descriptors, so idle or trickling connections must not pile up."""

from __future__ import annotations

import asyncio
import socket

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config, httpguard
from kairo_ingest.console import server as console_server


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


async def test_connections_beyond_the_cap_are_closed_and_trickled_heads_cut_off(
    engine: sa_async.AsyncEngine,
) -> None:
    limits = httpguard.Limits(max_connections=3, limit_concurrency=3, head_timeout_seconds=1.0)
    server = console_server.build(config.load(), engine, host="127.0.0.1", port=0, limits=limits)
    task, url = await console_server.start(server)
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    try:

        def probe() -> tuple[int, bool]:
            socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(6)]
            try:
                beyond_cap = sum(_closed_by_server(s, within=0.5) for s in socks[3:])
                # The three within the cap sent nothing: their heads time out (1 s).
                within_cap = all(_closed_by_server(s, within=10.0) for s in socks[:3])
                return beyond_cap, within_cap
            finally:
                for s in socks:
                    s.close()

        beyond_cap, timed_out = await asyncio.to_thread(probe)
        assert beyond_cap == 3
        assert timed_out
    finally:
        await console_server.stop(server, task)
