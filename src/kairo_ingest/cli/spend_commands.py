"""``accounts``, ``costs`` and ``ledger``: tokens per tenant, what the runs cost, and what
the run ledger follows."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
from typing import Any

from kairo_ingest import config, errors, secretbox
from kairo_ingest.cli import output
from kairo_ingest.db import accounts, costs, ledger_queries
from kairo_ingest.service import resources

_ACCOUNT_COLUMNS = [
    "name",
    "fingerprint",
    "created_at",
    "max_concurrent_runs",
    "max_memory_mbytes",
    "daily_cap_usd",
]
_ROTATED_COLUMNS = ["name", "fingerprint", "previous_fingerprint"]


def _box(settings: config.Settings) -> secretbox.SecretBox:
    if settings.secret_key is None:
        raise errors.ConfigError(
            "KAIRO_SECRET_KEY is not set: account tokens are stored encrypted with it "
            "(make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')",
            variable="KAIRO_SECRET_KEY",
        )
    return secretbox.SecretBox(settings.secret_key.get_secret_value())


def read_token() -> str:
    """One line from stdin (a prompt without echo on a terminal); never from argv."""
    token = getpass.getpass("Apify token: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = token.strip()
    if not token:
        raise errors.UsageError("no token on stdin: pipe the Apify token as one line")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise errors.UsageError("the token on stdin must be one line without spaces")
    return token


def _limit_values(args: argparse.Namespace) -> dict[str, Any]:
    given = vars(args)
    names = ("max_concurrent_runs", "max_memory_mbytes", "daily_cap_usd")
    return {name: given[name] for name in names if name in given}


async def rotate_key(args: argparse.Namespace, settings: config.Settings) -> int:
    """Re-encrypt every account token under the first key, and fingerprint it under that key.

    All or nothing: a token no key opens stops the command (exit 2, naming the account)
    before anything is written. Tokens already under the first key are rewritten too.
    """
    box = _box(settings)  # before opening the database

    def rekey(row: accounts.Account) -> tuple[str, str]:
        try:
            token = box.decrypt(row.token_ciphertext)  # registers it with the redaction
        except errors.ConfigError:
            raise errors.ConfigError(
                f"account {row.name!r}: its token cannot be decrypted with any key in "
                f"{secretbox.SECRET_KEY_VARIABLE} (was the key that encrypted it removed?); "
                "no token was changed",
                variable=secretbox.SECRET_KEY_VARIABLE,
            ) from None
        return box.encrypt(token), box.fingerprint(token)

    async with resources.database(settings) as db:
        done = await accounts.rewrite_tokens(db.engine, rekey)
    rows = [
        {
            "name": after.name,
            "fingerprint": after.fingerprint,
            "previous_fingerprint": before.fingerprint,
        }
        for before, after in done
    ]
    if args.json:
        output.emit({"accounts": rows, "rotated": len(rows)}, as_json=True)
    else:
        output.table(rows, _ROTATED_COLUMNS, as_json=False)
        sys.stdout.write(
            f"{len(rows)} account token(s) re-encrypted under the first key of "
            f"{secretbox.SECRET_KEY_VARIABLE}\n"
        )
    return 0


async def cmd_accounts(args: argparse.Namespace, settings: config.Settings) -> int:
    action = args.accounts_command
    if action == "rotate-key":
        return await rotate_key(args, settings)
    if action == "add":
        box = _box(settings)  # before reading the token or opening the database
        token = read_token()
        fingerprint = box.fingerprint(token)
        ciphertext = box.encrypt(token)
        async with resources.database(settings) as db:
            row = await accounts.add(
                db.engine,
                name=args.name,
                token_ciphertext=ciphertext,
                fingerprint=fingerprint,
                max_concurrent_runs=args.max_concurrent_runs,
                max_memory_mbytes=args.max_memory_mbytes,
                daily_cap_usd=args.daily_cap_usd,
            )
        output.emit(row, as_json=args.json)
        return 0
    async with resources.database(settings) as db:
        if action == "list":
            rows = await accounts.list_accounts(db.engine)
            output.table([r.to_json() for r in rows], _ACCOUNT_COLUMNS, as_json=args.json)
        elif action == "set":
            values = _limit_values(args)
            if not values:
                raise errors.UsageError(
                    "nothing to set: give --max-concurrent-runs, "
                    "--max-memory-mbytes or --daily-cap-usd"
                )
            output.emit(
                await accounts.update_limits(db.engine, args.name, values), as_json=args.json
            )
        elif action == "remove":
            output.emit(await accounts.remove(db.engine, args.name), as_json=args.json)
        else:
            await accounts.set_brand_cap(db.engine, args.brand, args.daily_cap_usd)
            output.emit(
                {"brand_id": str(args.brand), "daily_cap_usd": args.daily_cap_usd},
                as_json=args.json,
            )
    return 0


async def cmd_costs(args: argparse.Namespace, settings: config.Settings) -> int:
    async with resources.database(settings) as db:
        rows = await costs.report(
            db.engine, account=args.account, brand_id=args.brand, since=args.since
        )
    output.table(
        rows,
        [
            "day",
            "account",
            "brand_id",
            "actor_id",
            "runs",
            "usage_total_usd",
            "aborted_usd",
            "timed_out_usd",
            "charge_cap_usd",
        ],
        as_json=args.json,
    )
    return 0


async def cmd_ledger(args: argparse.Namespace, settings: config.Settings) -> int:
    """``ledger``: what the run ledger follows, and how runs ended (``db/ledger_queries.py``)."""
    since = args.since or dt.datetime.now(dt.UTC).date()
    async with resources.database(settings) as db, db.engine.connect() as conn:
        if args.unfollowed:
            rows = await ledger_queries.unfollowed(conn, limit=1000)
        else:
            live = await ledger_queries.live_by_state(conn)
            ended = await ledger_queries.ended_by_state(
                conn, since=dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
            )
    if args.unfollowed:
        output.table(rows, _UNFOLLOWED_COLUMNS, as_json=args.json)
        return 0
    if args.json:
        output.emit({"live": live, "ended": ended}, as_json=True)
        return 0
    sys.stdout.write("Runs that have not ended:\n")
    output.table(live, ["account", "status", "followed_by", "runs"], as_json=False)
    sys.stdout.write(f"\nRuns ended since {since.isoformat()}:\n")
    output.table(
        ended,
        [
            "account",
            "status",
            "partial_reason",
            "ended_by",
            "runs",
            "without_cost",
            "usage_total_usd",
        ],
        as_json=False,
    )
    return 0


_UNFOLLOWED_COLUMNS = [
    "run_id",
    "apify_run_id",
    "account",
    "status",
    "job_status",
    "unwanted",
    "abort_requested_at",
    "next_check_at",
]
