"""A worker process for the process-level queue tests (run as a script, not collected).

    python queue_worker_proc.py URL --mode drain --record FILE [--concurrency N]
    python queue_worker_proc.py URL --mode block --owner NAME [--lease S] [--grace S]

``drain``: runs the ``noop`` kind in drain mode and, on exit, writes the id of every job
its handler ran to FILE, one per line. ``block``: runs the ``block`` kind, whose handler
never returns; SIGTERM stops the worker gracefully (a second one skips the grace).
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import signal
import uuid

from kairo_ingest import config, logs
from kairo_ingest.db import engine as db_engine
from kairo_ingest.worker import context, core, parameters


async def main(args: argparse.Namespace) -> None:
    engine = db_engine.create(args.url, pool_size=4)
    ran: list[uuid.UUID] = []

    async def noop(ctx: context.JobContext) -> context.Outcome:
        ran.append(ctx.lease.job_id)
        return context.Outcome()

    async def block(ctx: context.JobContext) -> context.Outcome:
        await asyncio.Event().wait()
        return context.Outcome()

    handlers: dict[str, context.Handler] = (
        {"noop": noop} if args.mode == "drain" else {"block": block}
    )
    settings = config.Settings(
        lease_seconds=args.lease,
        poll_interval_seconds=0.1,
        listen_notify=True,
        retry_base_seconds=0.01,
        retry_cap_seconds=0.05,
        snooze_seconds=0.01,
        reap_interval_seconds=0.2,
        finished_job_retention_days=0,
        shutdown_grace_seconds=args.grace,
    )
    worker = core.Worker(
        engine,
        handlers,
        parameters.WorkerConfig.from_settings(
            settings, owner=args.owner, concurrency=args.concurrency, dsn_for_listen=args.url
        ),
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, worker.request_stop)
    if args.gate:
        # Start claiming together with the other processes: say we are up, wait for the
        # gate (a fast worker would otherwise drain the queue before the others start).
        gate = pathlib.Path(args.gate)
        pathlib.Path(f"{gate}.{args.owner}").touch()
        while not gate.exists():
            await asyncio.sleep(0.005)
    try:
        await worker.run(drain=args.mode == "drain")
    finally:
        await engine.dispose()
        if args.record:
            pathlib.Path(args.record).write_text("".join(f"{job_id}\n" for job_id in ran))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--mode", choices=["drain", "block"], required=True)
    parser.add_argument("--owner", default=f"proc-{uuid.uuid4().hex[:6]}")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--grace", type=float, default=5.0)
    parser.add_argument("--record", default=None)
    parser.add_argument("--gate", default=None, help="wait until this file exists")
    logs.configure(level="WARNING", json_format=True)
    asyncio.run(main(parser.parse_args()))
