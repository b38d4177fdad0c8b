"""``kairo-apify-sim`` (``python -m kairo_apify_sim``): serve the simulator from a shell.

Prints one JSON line, ``{"base_url": "http://127.0.0.1:PORT"}``, once it listens (so a
parent process can start it with ``--port 0`` and read where it is), then serves until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from kairo_apify_sim import config as sim_config
from kairo_apify_sim import server


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kairo-apify-sim", description="Serve the Apify simulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token", default=None, help="the only token accepted (default: any)")
    parser.add_argument("--time-factor", type=float, default=1.0, help="scales run durations")
    parser.add_argument("--duration-min", type=float, default=5.0, help="simulated seconds")
    parser.add_argument("--duration-max", type=float, default=120.0, help="simulated seconds")
    parser.add_argument("--ready-seconds", type=float, default=1.0, help="simulated seconds")
    parser.add_argument("--items", type=int, default=10, help="items of a run without a limit")
    parser.add_argument("--succeeded", type=float, default=0.9, help="outcome weight")
    parser.add_argument("--failed", type=float, default=0.05, help="outcome weight")
    parser.add_argument("--timed-out", type=float, default=0.05, help="outcome weight")
    parser.add_argument("--error-items", type=float, default=0.0, help="share of error items")
    parser.add_argument("--missing-ids", type=float, default=0.0, help="share without an id")
    parser.add_argument("--duplicates", type=float, default=0.0, help="share of duplicates")
    parser.add_argument("--faults", type=float, default=0.0, help="fault rate on every endpoint")
    parser.add_argument(
        "--config-json", default=None, help="a JSON object applied last, as POST /_sim/config"
    )
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> sim_config.SimConfig:
    cfg = sim_config.SimConfig(
        seed=args.seed,
        expected_token=args.token,
        time_factor=args.time_factor,
        ready_seconds=args.ready_seconds,
        duration_min_seconds=args.duration_min,
        duration_max_seconds=args.duration_max,
        outcome_weights={
            "SUCCEEDED": args.succeeded,
            "FAILED": args.failed,
            "TIMED-OUT": args.timed_out,
        },
        default_item_count=args.items,
        error_item_share=args.error_items,
        missing_id_share=args.missing_ids,
        duplicate_share=args.duplicates,
    )
    if args.faults > 0:
        cfg.faults["*"] = sim_config.FaultConfig.uniform(args.faults)
    if args.config_json:
        patch: Any = json.loads(args.config_json)
        cfg.apply(patch)
    return cfg


def _announce(base_url: str) -> None:
    sys.stdout.write(json.dumps({"base_url": base_url}) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    # stdout carries the one JSON line a parent process reads; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(server.serve(args.host, args.port, cfg, on_ready=_announce))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
