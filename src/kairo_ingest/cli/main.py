"""``kairo-ingest``: argument parsing, settings, logging and exit codes.

Exit codes: 0 success, 2 bad usage, input or setting (one line on stderr), 1 any
other failure (one line on stderr; the traceback only at DEBUG).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from collections.abc import Sequence

from kairo_ingest import __version__, config, errors, logs, redaction
from kairo_ingest.cli import argtypes, spend_parsers
from kairo_ingest.domain import retry as retry_rules
from kairo_ingest.domain import statuses

EXIT_FAILURE = 1
EXIT_USAGE = 2

DESCRIPTION = """\
kairo-ingest runs brand "compile" jobs from a PostgreSQL queue: for each of a brand's
sources it runs an Apify actor, stores every raw dataset item and normalizes them into
deduplicated evidence items, then records per-source evidence status on the job.

Settings come from KAIRO_* environment variables and .env (docs/configuration.md); a bad
value exits 2 naming the variable. With no
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
  kairo-ingest console                    # the operator console on http://127.0.0.1:8081/
"""


RUN_EPILOG = """\
Apify: KAIRO_APIFY_TOKEN is required; without it `run` exits 2. The built-in
simulator is used only with KAIRO_APIFY_SIMULATOR=true (or by `demo`).

Health server on KAIRO_HTTP_HOST:KAIRO_HTTP_PORT (default 127.0.0.1:8080), on its
own thread, so it answers while the worker's event loop is busy:
  /livez    200, or 503 once the worker's loop has not run for 5 s (with the lag)
  /readyz   200 when the database answers (over one connection of its own, 1.5 s
            timeout), the schema is at head and no SIGTERM arrived; the JSON names
            the Apify in use ("simulator" or the API host)
  /metrics  Prometheus text format
Limits: 64 concurrent requests, 128 open connections, a 16 KiB request head that
must arrive within 5 s, 5 s keep-alive.

Signals: the first SIGTERM/SIGINT turns /readyz to 503, lets in-flight jobs finish,
releases the rest and exits, all within KAIRO_SHUTDOWN_GRACE_SECONDS (default 25);
a second one skips the grace.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argtypes.Parser(
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
    run.add_argument(
        "--concurrency",
        type=argtypes.int_range(1, argtypes.MAX_CONCURRENCY),
        metavar="N",
        help=f"jobs in flight, 1 to {argtypes.MAX_CONCURRENCY} "
        "(default: KAIRO_CONCURRENCY, which defaults to 50)",
    )
    run.add_argument(
        "--drain",
        action="store_true",
        help="exit 0 once no job is ready or running (default: run until SIGTERM)",
    )
    run.formatter_class = argparse.RawDescriptionHelpFormatter
    run.epilog = RUN_EPILOG

    cmd("migrate", "upgrade the database schema to head (idempotent, replica-safe)")

    sources = cmd("sources", "manage a brand's source connections")
    ssub = sources.add_subparsers(dest="sources_command", metavar="ACTION", required=True)
    add = with_json(
        ssub.add_parser("add", help="add a source (returns the existing one if present)")
    )
    add.add_argument("--brand", type=argtypes.uuid_arg, required=True, help="brand UUID")
    add.add_argument(
        "--platform", type=argtypes.text, required=True, help="instagram, tiktok, youtube, ..."
    )
    add.add_argument(
        "--capability", type=argtypes.text, required=True, help="e.g. posts, reels, crawl_pages"
    )
    add.add_argument(
        "--identifier", type=argtypes.text, required=True, help="handle, URL or slug; normalized"
    )
    add.add_argument(
        "--settings",
        type=argtypes.json_object,
        default=None,
        metavar="JSON",
        help=f"actor settings, a JSON object (default: none): at most "
        f"{argtypes.MAX_JSON_BYTES // 1024} KiB and {argtypes.MAX_JSON_DEPTH} levels deep; "
        "no NaN/Infinity, no \\u0000, no lone surrogates",
    )
    add.add_argument(
        "--account",
        type=argtypes.text,
        default=None,
        metavar="NAME",
        help="the Apify account that runs this source (default: `default`, KAIRO_APIFY_TOKEN)",
    )
    lst = with_json(ssub.add_parser("list", help="list sources"))
    lst.add_argument("--brand", type=argtypes.uuid_arg, help="only this brand")
    dis = with_json(ssub.add_parser("disable", help="disable a source"))
    dis.add_argument("id", type=argtypes.uuid_arg, help="source id")

    enqueue = with_json(cmd("enqueue", "enqueue a compile job for a brand (deduplicated)"))
    enqueue.add_argument("--brand", type=argtypes.uuid_arg, required=True, help="brand UUID")
    enqueue.add_argument("--force-refresh", action="store_true", help="ignore fresh runs")
    enqueue.add_argument(
        "--priority",
        type=argtypes.int_range(argtypes.PG_INT_MIN, argtypes.PG_INT_MAX),
        default=0,
        metavar="N",
        help=f"lower runs first; an integer from {argtypes.PG_INT_MIN} to "
        f"{argtypes.PG_INT_MAX} (default: 0)",
    )
    enqueue.add_argument(
        "--max-attempts",
        type=argtypes.int_range(1, argtypes.MAX_ATTEMPTS),
        default=retry_rules.DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help=f"attempts before the job fails for good, 1 to {argtypes.MAX_ATTEMPTS} "
        f"(default: {retry_rules.DEFAULT_MAX_ATTEMPTS})",
    )

    enqueue.add_argument(
        "--traceparent",
        type=argtypes.traceparent,
        default=None,
        metavar="TP",
        help="a W3C traceparent: the job's trace span continues that trace "
        "(when tracing is on; see OTEL_EXPORTER_OTLP_ENDPOINT)",
    )

    jobs = cmd("jobs", "inspect and steer jobs")
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    jl = with_json(jsub.add_parser("list", help="list jobs, newest first"))
    jl.add_argument(
        "--status",
        choices=[s.value for s in statuses.JobStatus],
        help="only jobs in this status (default: all)",
    )
    jl.add_argument("--brand", type=argtypes.uuid_arg, help="only this brand (default: all)")
    jl.add_argument(
        "--limit",
        type=argtypes.int_range(1, argtypes.MAX_LIST_LIMIT),
        default=50,
        metavar="N",
        help=f"at most N jobs, 1 to {argtypes.MAX_LIST_LIMIT} (default: 50)",
    )
    for name, text in (
        ("show", "show one job, with its evidence_status and every attempt"),
        ("retry", "put a failed or cancelled job back in the queue"),
        (
            "cancel",
            "cancel a pending job, or mark a running one: returns at once, and its owner "
            "stops it at its next heartbeat",
        ),
    ):
        p = with_json(jsub.add_parser(name, help=text))
        p.add_argument("id", type=argtypes.uuid_arg, help="job id")
    prune = with_json(jsub.add_parser("prune", help="delete finished jobs older than N days"))
    prune.add_argument(
        "--older-than-days",
        type=argtypes.days,
        default=None,
        metavar="DAYS",
        help=f"delete jobs that finished more than DAYS days ago, a number from 0 to "
        f"{argtypes.MAX_DAYS:g} (fractions allowed). Default: KAIRO_FINISHED_JOB_RETENTION_DAYS "
        "(14); when that is 0, finished jobs are kept and nothing is deleted",
    )

    spend_parsers.add_parsers(cmd, with_json)
    with_json(cmd("stats", "jobs per status and the age of the oldest ready job"))
    demo = cmd("demo", "embedded PostgreSQL + simulator: sample brands, a worker run, a summary")
    demo.add_argument(
        "--console",
        action="store_true",
        help="then serve the operator console on the demo's data and print its login URL "
        "(until Ctrl-C)",
    )
    sim = cmd("simulator", "serve the Apify simulator on its own")
    sim.add_argument(
        "--host",
        type=argtypes.text,
        default="127.0.0.1",
        help="address to bind (default: %(default)s)",
    )
    sim.add_argument(
        "--port",
        type=argtypes.int_range(0, 65535),
        default=8765,
        help="TCP port, 0 to 65535; 0 picks a free one (default: %(default)s)",
    )
    con = cmd("console", "serve the operator console (web UI) against the database")
    con.add_argument(
        "--host",
        type=argtypes.text,
        help="listen address (KAIRO_CONSOLE_HOST, default 127.0.0.1); any other needs "
        "KAIRO_CONSOLE_TOKEN. Without it the console makes a token and prints a login URL",
    )
    con.add_argument(
        "--port",
        type=argtypes.int_range(0, 65535),
        help="TCP port, 0 to 65535 (KAIRO_CONSOLE_PORT, default 8081)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    if not raw or (raw[0].startswith("-") and raw[0] not in ("-h", "--help", "--version")):
        raw = ["run", *raw]  # no subcommand means `run`
    args = build_parser().parse_args(raw)
    settings: config.Settings | None = None
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
        if settings is not None and settings.log_level == "DEBUG":  # from the env or .env
            sys.stderr.write(redaction.redact(traceback.format_exc()))
        return EXIT_FAILURE
