"""Serving the console in the foreground until SIGTERM or SIGINT: ``kairo-ingest console``
and ``kairo-ingest demo --console``.

It prints the console's address and, when it made its own token (no
``KAIRO_CONSOLE_TOKEN``), the login URL that carries it: on standard output, once, and
never through the log.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import config
from kairo_ingest.console import server


async def serve(
    settings: config.Settings, engine: sa_async.AsyncEngine, *, host: str, port: int
) -> int:
    console = server.build(settings, engine, host=host, port=port)
    task, url = await server.start(console)
    sys.stdout.write(f"console: {url}\n")
    if console.login_url is not None:
        sys.stdout.write(f"console: log in at {console.login_url}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiting = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.stop(console, task)
    return 0
