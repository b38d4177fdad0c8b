"""The commands behind the CLI, one coroutine each, composed from the adapters."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Awaitable, Callable

from kairo_ingest import config, errors
from kairo_ingest.cli import output, spend_commands
from kairo_ingest.db import migrate, sources
from kairo_ingest.domain import statuses
from kairo_ingest.queue import history
from kairo_ingest.queue import jobs as queue_jobs
from kairo_ingest.service import resources

Command = Callable[[argparse.Namespace, config.Settings], Awaitable[int]]


async def cmd_migrate(args: argparse.Namespace, settings: config.Settings) -> int:
    async with resources.database(settings, require_head=False) as db:
        if not db.embedded:  # the embedded database was migrated on open
            await migrate.upgrade(db.url, migrations=settings.migrations_dir)
        revision = await migrate.current_revision(db.engine)
    sys.stdout.write(f"schema at {revision} (head) on {db.display_url}\n")
    return 0


async def cmd_sources(args: argparse.Namespace, settings: config.Settings) -> int:
    async with resources.database(settings) as db:
        if args.sources_command == "add":
            source, _created = await sources.add(
                db.engine,
                brand_id=args.brand,
                platform=args.platform,
                capability=args.capability,
                identifier=args.identifier,
                settings=args.settings,
                account=args.account,
            )
            output.emit(source, as_json=args.json)
        elif args.sources_command == "list":
            rows = await sources.list_sources(db.engine, brand_id=args.brand)
            output.table(
                [r.to_json() for r in rows],
                ["id", "brand_id", "platform", "capability", "identifier", "enabled", "account"],
                as_json=args.json,
            )
        else:
            output.emit(await sources.disable(db.engine, args.id), as_json=args.json)
    return 0


async def cmd_enqueue(args: argparse.Namespace, settings: config.Settings) -> int:
    async with resources.database(settings) as db:
        job, _created = await queue_jobs.enqueue(
            db.engine,
            kind=statuses.JobKind.COMPILE,
            brand_id=args.brand,
            params={"force_refresh": bool(args.force_refresh)},
            priority=args.priority,
            max_attempts=args.max_attempts,
            traceparent=args.traceparent,
        )
    output.emit(job, as_json=args.json)
    return 0


async def cmd_jobs(args: argparse.Namespace, settings: config.Settings) -> int:
    action = args.jobs_command
    async with resources.database(settings) as db:
        if action == "list":
            rows = await queue_jobs.list_jobs(
                db.engine, status=args.status, brand_id=args.brand, limit=args.limit
            )
            output.table(
                [output.jsonable(r) for r in rows],
                [
                    "id",
                    "kind",
                    "brand_id",
                    "status",
                    "attempts",
                    "max_attempts",
                    "created_at",
                    "last_error_kind",
                ],
                as_json=args.json,
            )
            return 0
        if action == "prune":
            return await _prune(db, args, settings)
        if action == "show":
            return await _show(db, args)
        operation = {
            "retry": queue_jobs.retry,
            "cancel": queue_jobs.cancel,
        }[action]
        job = await operation(db.engine, args.id)
    if job is None:
        verb = {
            "retry": "no failed or cancelled job",
            "cancel": "no pending or running job",
        }[action]
        raise errors.UsageError(f"{verb} with id {args.id}")
    output.emit(job, as_json=args.json)
    return 0


async def _show(db: resources.Database, args: argparse.Namespace) -> int:
    """``jobs show``: the job, then every attempt with its error, its runs and their cost."""
    job = await queue_jobs.get(db.engine, args.id)
    if job is None:
        raise errors.UsageError(f"no job with id {args.id}")
    attempts = await history.attempts(db.engine, job)
    if args.json:
        output.emit(
            {**job.to_json(), "attempt_history": [a.to_json() for a in attempts]}, as_json=True
        )
        return 0
    output.emit(job, as_json=False)
    sys.stdout.write(f"attempts ({len(attempts)})\n")
    for attempt in attempts:
        for line in output.attempt_lines(attempt.to_json()):
            sys.stdout.write(f"  {line}\n")
    return 0


async def _prune(
    db: resources.Database, args: argparse.Namespace, settings: config.Settings
) -> int:
    """``jobs prune``: an explicit ``--older-than-days`` (checked by argtypes.days), else
    the retention setting, where 0 means "keep every finished job"
    (docs/configuration.md, contract)."""
    if args.older_than_days is not None:
        older_than = dt.timedelta(days=args.older_than_days)
    else:
        retention = settings.finished_job_retention
        if retention is None:
            output.emit(
                {
                    "deleted": 0,
                    "kept": "all finished jobs (KAIRO_FINISHED_JOB_RETENTION_DAYS is 0)",
                },
                as_json=args.json,
            )
            return 0
        older_than = retention
    deleted = await queue_jobs.prune(db.engine, older_than=older_than)
    output.emit({"deleted": deleted}, as_json=args.json)
    return 0


async def cmd_stats(args: argparse.Namespace, settings: config.Settings) -> int:
    async with resources.database(settings) as db:
        output.emit(await queue_jobs.stats(db.engine), as_json=args.json)
    return 0


async def cmd_run(args: argparse.Namespace, settings: config.Settings) -> int:
    from kairo_ingest.service import runner

    return await runner.run(settings, concurrency=args.concurrency, drain=args.drain)


async def cmd_demo(args: argparse.Namespace, settings: config.Settings) -> int:
    from kairo_ingest.service import demo

    return await demo.run(settings, console=args.console)


async def cmd_simulator(args: argparse.Namespace, settings: config.Settings) -> int:
    from kairo_ingest.service import apify_access

    with apify_access.installed_simulator():
        from kairo_apify_sim import server
    await server.serve(args.host, args.port)
    return 0


async def cmd_console(args: argparse.Namespace, settings: config.Settings) -> int:
    from kairo_ingest.console import security, server
    from kairo_ingest.service import operator_console

    host = args.host or settings.console_host
    port = args.port if args.port is not None else (settings.console_port or server.DEFAULT_PORT)
    token = settings.console_token.get_secret_value() if settings.console_token else None
    security.check_bind(host, token)  # before opening any database
    # The engine only opens and checks the database: the console reads and acts through
    # connections of its own (console/access.py).
    async with resources.database(settings, pool_size=1) as db:
        return await operator_console.serve(settings, db.engine, host=host, port=port)


COMMANDS: dict[str, Command] = {
    "run": cmd_run,
    "migrate": cmd_migrate,
    "sources": cmd_sources,
    "enqueue": cmd_enqueue,
    "jobs": cmd_jobs,
    "stats": cmd_stats,
    "demo": cmd_demo,
    "simulator": cmd_simulator,
    "console": cmd_console,
    "accounts": spend_commands.cmd_accounts,
    "costs": spend_commands.cmd_costs,
    "ledger": spend_commands.cmd_ledger,
}


async def dispatch(args: argparse.Namespace, settings: config.Settings) -> int:
    return await COMMANDS[args.command](args, settings)
