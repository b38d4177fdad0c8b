"""``kairo-ingest``: argument parsing, settings, logging and exit codes.

Exit codes: 0 success, 2 bad usage, input or setting (one line on stderr), 1 any
other failure (one line on stderr; the traceback only at DEBUG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
import uuid
from collections.abc import Sequence
from typing import Any

from kairo_ingest import __version__, config, errors, logs
from kairo_ingest.domain import statuses

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

DESCRIPTION = """\
kairo-ingest runs brand "compile" jobs from a PostgreSQL queue: for each of a brand's
sources it runs an Apify actor, stores every raw dataset item and normalizes them into
deduplicated evidence items, then records per-source evidence status on the job.

Settings come from KAIRO_* environment variables and .env (see the README). With no
KAIRO_DATABASE_URL an embedded PostgreSQL under KAIRO_DATA_DIR is used. `run` needs
KAIRO_APIFY_TOKEN; the built-in Apify simulator stands in for Apify only in `demo` or
with KAIRO_APIFY_SIMULATOR=true.
"""

EPILOG = """\
examples:
  kairo-ingest demo                       # everything embedded, end to end
  kairo-ingest migrate                    # upgrade the schema (safe from many replicas)
  kairo-ingest sources add --brand B --platform instagram --capability posts --identifier @acme
  kairo-ingest enqueue --brand B
  kairo-ingest run                        # worker + health server; SIGTERM drains
"""


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value!r}") from None


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return parsed


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kairo-ingest",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kairo-ingest {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    def with_json(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        return p

    run = cmd("run", "run the worker and the health/metrics server (the default command)")
    run.add_argument("--concurrency", type=_positive, help="jobs in flight (KAIRO_CONCURRENCY)")
    run.add_argument("--drain", action="store_true", help="exit 0 once no job is ready or running")

    cmd("migrate", "upgrade the database schema to head (idempotent, replica-safe)")

    sources = cmd("sources", "manage a brand's source connections")
    ssub = sources.add_subparsers(dest="sources_command", metavar="ACTION", required=True)
    add = with_json(
        ssub.add_parser("add", help="add a source (returns the existing one if present)")
    )
    add.add_argument("--brand", type=_uuid, required=True, help="brand UUID")
    add.add_argument("--platform", required=True, help="instagram, tiktok, youtube, linkedin, web")
    add.add_argument("--capability", required=True, help="e.g. posts, reels, crawl_pages")
    add.add_argument("--identifier", required=True, help="handle, URL or slug; normalized")
    add.add_argument("--settings", type=_json_object, default=None, help="JSON object")
    lst = with_json(ssub.add_parser("list", help="list sources"))
    lst.add_argument("--brand", type=_uuid, help="only this brand")
    dis = with_json(ssub.add_parser("disable", help="disable a source"))
    dis.add_argument("id", type=_uuid, help="source id")

    enqueue = with_json(cmd("enqueue", "enqueue a compile job for a brand (deduplicated)"))
    enqueue.add_argument("--brand", type=_uuid, required=True, help="brand UUID")
    enqueue.add_argument("--force-refresh", action="store_true", help="ignore fresh runs")
    enqueue.add_argument("--priority", type=int, default=0, help="lower runs first (default 0)")
    enqueue.add_argument("--max-attempts", type=_positive, default=3, help="default 3")

    jobs = cmd("jobs", "inspect and steer jobs")
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    jl = with_json(jsub.add_parser("list", help="list jobs, newest first"))
    jl.add_argument("--status", choices=[s.value for s in statuses.JobStatus])
    jl.add_argument("--brand", type=_uuid)
    jl.add_argument("--limit", type=_positive, default=50)
    for name, text in (
        ("show", "show one job, with its evidence_status"),
        ("retry", "put a failed or cancelled job back in the queue"),
        ("cancel", "cancel a pending or running job (its owner stops at the next heartbeat)"),
    ):
        p = with_json(jsub.add_parser(name, help=text))
        p.add_argument("id", type=_uuid, help="job id")
    prune = with_json(jsub.add_parser("prune", help="delete finished jobs older than N days"))
    prune.add_argument("--older-than-days", type=float, default=None, help="default: retention")

    with_json(cmd("stats", "jobs per status and the age of the oldest ready job"))
    cmd("demo", "embedded PostgreSQL + simulator: sample brands, a worker run, a summary")
    sim = cmd("simulator", "serve the Apify simulator on its own")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if not raw or (raw[0].startswith("-") and raw[0] not in ("-h", "--help", "--version")):
        raw = ["run", *raw]  # no subcommand means `run`
    args = build_parser().parse_args(raw)
    try:
        settings = config.load()
        logs.configure(
            level=settings.log_level,
            json_format=settings.resolved_log_format is config.LogFormat.JSON,
        )
        # Imported here so that --help and usage errors answer without loading the adapters.
        from kairo_ingest.cli import commands

        return asyncio.run(commands.dispatch(args, settings))
    except (errors.ConfigError, errors.UsageError) as exc:
        sys.stderr.write(f"kairo-ingest: error: {exc.message}\n")
        return EXIT_USAGE
    except errors.KairoError as exc:
        sys.stderr.write(f"kairo-ingest: error: {exc.message}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        sys.stderr.write(f"kairo-ingest: unexpected error: {errors.describe(exc)}\n")
        if os.environ.get("KAIRO_LOG_LEVEL", "").upper() == "DEBUG":
            traceback.print_exc()
        return EXIT_FAILURE
