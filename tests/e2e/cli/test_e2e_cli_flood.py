"""`run` under a flood of half-open connections to its health port.

Before, 1,200 half-open connections exhausted the process's descriptors: heartbeats and
database connects failed with EMFILE, most jobs failed, and asyncio logged tracebacks
by the megabyte. Now the health server caps its connections and cuts off request
heads that do not arrive, so the worker keeps its descriptors and its jobs succeed.
"""

from __future__ import annotations

import errno
import json
import resource
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from cli_kit import cli_json, env, free_port, wait_for

HALF_OPEN = 1_200  # loopback only, bounded
DESCRIPTOR_LIMIT = 512  # the flood alone would hold about 700 without the cap
JOBS = 6
BOUND_SECONDS = 180.0


def _limit_descriptors() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, hard))


def test_jobs_succeed_while_the_health_port_is_flooded(db_url: str, tmp_path: Path) -> None:
    environ = env(
        KAIRO_DATABASE_URL=db_url,
        KAIRO_DATA_DIR=str(tmp_path / "data"),
        KAIRO_APIFY_SIMULATOR="true",
        KAIRO_LEASE_SECONDS="10",
    )
    brands = [str(uuid.uuid4()) for _ in range(JOBS)]
    for brand in brands:
        cli_json(
            "sources", "add", "--brand", brand, "--platform", "instagram",
            "--capability", "posts", "--identifier", f"@b{brand[:8]}",
            environ=environ,
        )  # fmt: skip
    port = free_port()
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kairo_ingest", "run"],
            env={**environ, "KAIRO_HTTP_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            text=True,
            preexec_fn=_limit_descriptors,  # only an rlimit, before exec
        )
    flood: list[socket.socket] = []
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", 200, proc=proc, within=60)
        for _ in range(HALF_OPEN):
            sock = socket.socket()
            sock.setblocking(False)
            code = sock.connect_ex(("127.0.0.1", port))
            assert code in (0, errno.EINPROGRESS), code
            flood.append(sock)
        for brand in brands:
            cli_json("enqueue", "--brand", brand, environ=environ)
        deadline = time.monotonic() + BOUND_SECONDS
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = cli_json("stats", environ=environ)["counts"]
            if counts.get("succeeded", 0) + counts.get("failed", 0) >= JOBS:
                break
            time.sleep(0.5)
        assert counts.get("succeeded", 0) == JOBS, counts
        jobs = cli_json("jobs", "list", environ=environ)
        assert {j["attempts"] for j in jobs} == {1}, jobs
        for sock in flood:
            sock.close()
        flood.clear()
        wait_for(f"http://127.0.0.1:{port}/livez", 200, proc=proc, within=60)
    finally:
        for sock in flood:
            sock.close()
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=60)
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert len(text) < 200_000, f"{len(text)} bytes of logs"
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert not [r for r in records if "EMFILE" in json.dumps(r)], text[-3000:]
