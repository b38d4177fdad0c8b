"""A health server under a tight descriptor limit (run as a script, not collected).

Prints ``listening PORT`` once it serves, lowers RLIMIT_NOFILE to what it uses plus a
little, then answers ``seen`` on stdin with how many descriptor-exhaustion errors the
guard has counted, until stdin closes. Logs (JSON) go to stderr.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys

from kairo_ingest import logs
from kairo_ingest.service import health_server, http

HEADROOM = 16


async def main() -> None:
    logs.configure(level="INFO", json_format=True)
    health = http.Health("postgresql://postgres@127.0.0.1:1/none", apify="simulator")
    limits = health_server.Limits(head_timeout_seconds=2.0, descriptor_log_interval_seconds=3600.0)
    front = health_server.HealthServer(health, host="127.0.0.1", port=0, limits=limits)
    address = await asyncio.to_thread(front.start)
    ticker = asyncio.create_task(health.tick_forever())
    used = len(os.listdir("/proc/self/fd"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + HEADROOM, hard))
    print("listening", address.rsplit(":", 1)[1], flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        print("seen", front.descriptor_log.seen, flush=True)
    ticker.cancel()
    await asyncio.to_thread(front.stop)


if __name__ == "__main__":
    asyncio.run(main())
