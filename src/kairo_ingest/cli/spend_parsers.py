"""Argument parsers of the spend commands: ``accounts ...`` and ``costs``."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable

from kairo_ingest.cli import argtypes

MAX_RUNS = 100_000
MAX_MEMORY_MBYTES = 2**31 - 1
MAX_CAP_USD = 1e9

ROTATE_KEY_DESCRIPTION = """\
Re-encrypt every stored account token under the first key of KAIRO_SECRET_KEY, in one
transaction (all or nothing), and print each account's name and token fingerprint.

The fingerprint is an HMAC under a key derived from the first key, so rotate-key
recomputes it under the new first key: each line shows the new fingerprint and the
previous one. Afterwards, equal tokens show equal fingerprints again.
"""

ROTATE_KEY_EPILOG = """\
To replace a key:
  1. Put the new key first, KAIRO_SECRET_KEY="NEW,OLD", wherever it is set (the
     workers and this CLI), and restart the workers: they now decrypt with either key.
  2. Run `kairo-ingest accounts rotate-key`: every token is now encrypted under NEW.
  3. Drop the old key, KAIRO_SECRET_KEY="NEW", and restart the processes.

Running it again is harmless. It exits 2 and changes nothing when KAIRO_SECRET_KEY is
not set, or when a token cannot be decrypted with any of its keys (the error names the
account: put the key that encrypted it back, or remove and add the account again).
"""


def usd(value: str) -> float:
    """A finite dollar amount from 0 to 1e9."""
    try:
        number = float(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value[:40]!r}") from None
    if not (0 <= number <= MAX_CAP_USD):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a number from 0 to {MAX_CAP_USD:g}")
    return number


def cap_or_none(value: str) -> float | None:
    return None if value.strip().lower() in ("none", "") else usd(value)


def date_arg(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value[:40]!r}") from None


def name_arg(value: str) -> str:
    value = argtypes.text(value).strip()
    if not value or len(value) > 100:
        raise argparse.ArgumentTypeError("an account name is 1 to 100 characters")
    return value


def _limits(p: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """``suppress``: an option not given is absent from the namespace (``set``)."""
    default = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "--max-concurrent-runs",
        type=argtypes.int_range(1, MAX_RUNS),
        metavar="K",
        default=default,
        help="runs in flight at once on this account "
        "(default: KAIRO_APIFY_ACCOUNT_MAX_CONCURRENT_RUNS)",
    )
    p.add_argument(
        "--max-memory-mbytes",
        type=argtypes.int_range(128, MAX_MEMORY_MBYTES),
        metavar="M",
        default=default,
        help="total actor memory in MB (default: KAIRO_APIFY_ACCOUNT_MAX_MEMORY_MBYTES)",
    )
    p.add_argument(
        "--daily-cap-usd",
        type=cap_or_none,
        metavar="X",
        default=default,
        help="spend per UTC day after which no run starts ('none': no cap)",
    )


def add_parsers(
    cmd: Callable[[str, str], argparse.ArgumentParser],
    with_json: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    accounts = cmd("accounts", "Apify accounts: a token per tenant, its limits and daily cap")
    asub = accounts.add_subparsers(dest="accounts_command", metavar="ACTION", required=True)
    add = with_json(
        asub.add_parser(
            "add",
            help="add an account; the token is read as one line from stdin (never argv)",
            description="Add an Apify account. The token is read as one line from stdin "
            "(prompted without echo on a terminal), encrypted with KAIRO_SECRET_KEY.",
        )
    )
    add.add_argument("--name", type=name_arg, required=True, help="account name")
    _limits(add)
    with_json(asub.add_parser("list", help="name, token fingerprint, created, limits"))
    st = with_json(asub.add_parser("set", help="change an account's limits or daily cap"))
    st.add_argument("--name", type=name_arg, required=True, help="account name")
    _limits(st, suppress=True)
    rm = with_json(asub.add_parser("remove", help="remove an account no source uses"))
    rm.add_argument("--name", type=name_arg, required=True, help="account name")
    with_json(
        asub.add_parser(
            "rotate-key",
            help="re-encrypt every account token under the first key of KAIRO_SECRET_KEY",
            description=ROTATE_KEY_DESCRIPTION,
            epilog=ROTATE_KEY_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    bc = with_json(
        asub.add_parser("brand-cap", help="a brand's own daily cap, overriding its accounts'")
    )
    bc.add_argument("--brand", type=argtypes.uuid_arg, required=True, help="brand UUID")
    bc.add_argument(
        "--daily-cap-usd", type=cap_or_none, required=True, metavar="X", help="'none' removes it"
    )

    costs = with_json(
        cmd(
            "costs",
            "Apify spend per account, brand, actor and UTC day, with the share of runs that "
            "were aborted, timed out or stopped at their charge cap",
        )
    )
    costs.add_argument("--account", type=name_arg, help="only this account")
    costs.add_argument("--brand", type=argtypes.uuid_arg, help="only this brand")
    costs.add_argument(
        "--since", type=date_arg, metavar="DATE", help="from this UTC day on (default: 30 days)"
    )

    ledger = with_json(
        cmd(
            "ledger",
            "the run ledger: Apify runs that have not ended, by account, status and who "
            "follows them (a job or the ledger), and the runs ended since a day, by how",
        )
    )
    ledger.add_argument(
        "--unfollowed",
        action="store_true",
        help="list the runs that have not ended and that no job follows any more instead",
    )
    ledger.add_argument(
        "--since",
        type=date_arg,
        metavar="DATE",
        help="ended runs from this UTC day on (default: today)",
    )
