"""Helpers for the pipeline's end-to-end tests: the real CLI and the simulator as processes.

Nothing here is collected as a test. The processes run from the test's temporary
directory (no stray ``.env``), write their logs to files there (a full pipe can never
block them), and every wait polls a condition under a generous bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx

from support import outcomes

BOUND_SECONDS = 90.0  # generous: a wait that takes this long has hung, it is not slow
POLL_SECONDS = 0.05

# Every platform and capability of the registry, as `sources add` arguments.
ALL_SOURCES: tuple[tuple[str, str, str, dict[str, Any] | None], ...] = (
    ("instagram", "posts", "@{h}", None),
    ("instagram", "reels", "https://www.instagram.com/{h}/", None),
    ("tiktok", "profile_videos", "@{h}", None),
    ("youtube", "channel_videos", "https://www.youtube.com/@{h}", None),
    ("linkedin", "company_posts", "https://www.linkedin.com/company/{h}/", None),
    ("linkedin", "profile_posts", "https://www.linkedin.com/in/{h}-ceo/", None),
    (
        "web",
        "crawl_pages",
        "https://{h}.example/",
        {"extra_start_urls": ["https://{h}.example/blog/", "https://{h}.example/news/"]},
    ),
)


def kairo_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m kairo_ingest``."""
    script = pathlib.Path(sys.executable).with_name("kairo-ingest")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "kairo_ingest"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, bound: float = BOUND_SECONDS, what: str = ""
) -> None:
    try:
        async with asyncio.timeout(bound):
            while not await condition():
                await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        raise AssertionError(f"not within {bound:.0f}s: {what or condition}") from None


def cli_env(*, db_url: str, apify_url: str, data_dir: pathlib.Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI process: our database, the simulator as Apify, short timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
    env.update(
        {
            "KAIRO_DATABASE_URL": db_url,
            "KAIRO_APIFY_BASE_URL": apify_url,
            # A token makes the client use KAIRO_APIFY_BASE_URL (the simulator accepts any).
            "KAIRO_APIFY_TOKEN": "e2e-simulator-token-0123456789abcdef",
            "KAIRO_DATA_DIR": str(data_dir),
            "KAIRO_HTTP_PORT": "0",
            "KAIRO_LOG_FORMAT": "json",
            "KAIRO_LOG_LEVEL": "INFO",
            "KAIRO_LEASE_SECONDS": "3",
            "KAIRO_RETRY_BASE_SECONDS": "0.2",
            "KAIRO_RETRY_CAP_SECONDS": "1",
            "KAIRO_SNOOZE_SECONDS": "1",
            "KAIRO_REAP_INTERVAL_SECONDS": "0.3",
            "KAIRO_POLL_INTERVAL_SECONDS": "0.2",
            "KAIRO_SHUTDOWN_GRACE_SECONDS": "5",
            "KAIRO_FEATURE_LINKEDIN_PROFILE_POSTS": "1",
        }
    )
    env.update(extra)
    return env


class Processes:
    """Processes started by a test; whatever is still alive at the end is killed."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.started: list[tuple[asyncio.subprocess.Process, pathlib.Path]] = []

    async def spawn(
        self, argv: list[str], env: Mapping[str, str], *, log_name: str
    ) -> asyncio.subprocess.Process:
        log_path = self.workdir / f"{log_name}.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=self.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        self.started.append((proc, log_path))
        return proc

    async def cli(self, env: Mapping[str, str], *args: str, stdin: str | None = None) -> Any:
        """Run one short CLI command with ``--json``; its parsed stdout (exit 0 required).
        ``stdin`` is sent to it (a token for ``accounts add``)."""
        proc = await asyncio.create_subprocess_exec(
            *kairo_command(),
            *args,
            "--json",
            env=dict(env),
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        sent = None if stdin is None else stdin.encode()
        out, err = await outcomes.within(BOUND_SECONDS, proc.communicate(sent))
        assert proc.returncode == 0, (args, proc.returncode, err.decode(errors="replace"))
        return json.loads(out)

    async def exit_code(self, proc: asyncio.subprocess.Process, bound: float) -> int:
        try:
            return await outcomes.within(bound, proc.wait())
        except TimeoutError:
            raise AssertionError(
                f"process {proc.pid} still running after {bound:.0f}s\n{self.log_tail(proc)}"
            ) from None

    def log_tail(self, proc: asyncio.subprocess.Process, lines: int = 40) -> str:
        for candidate, path in self.started:
            if candidate is proc:
                text = path.read_text(errors="replace").splitlines()
                return "\n".join(text[-lines:])
        return ""

    async def kill_all(self) -> None:
        for proc, _ in self.started:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                await proc.wait()


class Simulator:
    """``kairo-ingest simulator`` in its own process, steered over its control endpoints."""

    def __init__(self, proc: asyncio.subprocess.Process, base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10.0)

    async def configure(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        reply = await self.http.post("/_sim/config", json=dict(patch))
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    async def stats(self) -> dict[str, Any]:
        reply = await self.http.get("/_sim/stats")
        reply.raise_for_status()
        return dict(reply.json())

    async def runs(self) -> list[dict[str, Any]]:
        reply = await self.http.get("/_sim/runs")
        reply.raise_for_status()
        return list(reply.json()["runs"])

    async def plan(self, run_id: str) -> dict[str, Any]:
        reply = await self.http.get(f"/_sim/runs/{run_id}/plan")
        reply.raise_for_status()
        return dict(reply.json())


@contextlib.asynccontextmanager
async def simulator_process(processes: Processes) -> AsyncIterator[Simulator]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
    env["KAIRO_LOG_FORMAT"] = "json"
    proc = await processes.spawn(
        [*kairo_command(), "simulator", "--host", "127.0.0.1", "--port", str(port)],
        env,
        log_name=f"simulator-{uuid.uuid4().hex[:6]}",
    )
    sim = Simulator(proc, f"http://127.0.0.1:{port}")

    async def answers() -> bool:
        assert proc.returncode is None, processes.log_tail(proc)
        try:
            await sim.stats()
        except httpx.TransportError:
            return False
        return True

    try:
        await wait_until(answers, what="the simulator answers /_sim/stats")
        yield sim
    finally:
        await sim.http.aclose()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await outcomes.within(10, proc.wait())
            except TimeoutError:
                proc.kill()
                await proc.wait()
