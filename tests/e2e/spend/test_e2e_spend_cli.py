"""The real CLI: accounts with tokens from stdin, sources per account, costs, and secrecy.

Secret test: with KAIRO_SECRET_KEY and tokens set, a whole session (accounts
add/list/set, sources add, enqueue, a worker run at DEBUG, /metrics, costs, jobs show)
never shows a token, neither in what the commands print, nor in the logs, nor in any row
of any table.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from kairo_ingest import secretbox
from kairo_ingest.db import engine as db_engine
from support import outcomes

TOKEN_A = "apify_api_e2eTENANTaaaaaaaaaaaaaaaa01"
DEFAULT_TOKEN = "apify_api_e2eDEFAULTdddddddddddddddd02"
KEY = secretbox.generate_key()
BRAND = str(uuid.uuid4())
DROP = ("KAIRO_DATABASE_URL", "KAIRO_APIFY_TOKEN", "KAIRO_APIFY_BASE_URL", "KAIRO_SECRET_KEY")


def _env(db_url: str, tmp_path: Path, **values: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in DROP and not k.startswith("KAIRO_")}
    out.update(
        KAIRO_DATABASE_URL=db_url,
        KAIRO_DATA_DIR=str(tmp_path / "data"),
        KAIRO_LOG_FORMAT="json",
        KAIRO_LOG_LEVEL="DEBUG",
    )
    out.update(values)
    return out


class Session:
    """Runs CLI commands and keeps everything they printed."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.environ = environ
        self.printed: list[str] = []

    def run(self, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> Any:
        done = subprocess.run(
            [sys.executable, "-m", "kairo_ingest", *args],
            env=env or self.environ,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        self.printed += [done.stdout, done.stderr]
        return done

    def json(self, *args: str, stdin: str = "") -> Any:
        done = self.run(*args, "--json", stdin=stdin)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _dump(db_url: str) -> str:
    conn = await asyncpg.connect(db_engine.plain_dsn(db_url))
    try:
        names = [
            r[0]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        ]
        rows = []
        for name in names:
            rows += [f"{name}: {r[0]}" for r in await conn.fetch(f'SELECT t::text FROM "{name}" t')]
    finally:
        await conn.close()
    return "\n".join(rows)


@pytest.fixture
def session(db_url: str, tmp_path: Path) -> Session:
    return Session(_env(db_url, tmp_path, KAIRO_SECRET_KEY=KEY, KAIRO_APIFY_TOKEN=DEFAULT_TOKEN))


def test_accounts_add_refuses_without_a_key_or_a_token(db_url: str, tmp_path: Path) -> None:
    no_key = Session(_env(db_url, tmp_path))
    done = no_key.run("accounts", "add", "--name", "acme", stdin=TOKEN_A + "\n")
    assert done.returncode == 2
    assert "KAIRO_SECRET_KEY" in done.stderr
    assert done.stderr.count("\n") == 1
    keyed = Session(_env(db_url, tmp_path, KAIRO_SECRET_KEY=KEY))
    empty = keyed.run("accounts", "add", "--name", "acme", stdin="\n")
    assert empty.returncode == 2
    assert "token" in empty.stderr
    assert keyed.json("accounts", "list") == []


def test_a_session_with_keys_and_tokens_never_shows_a_token(
    session: Session, db_url: str, tmp_path: Path
) -> None:
    added = session.json(
        "accounts", "add", "--name", "acme", "--max-concurrent-runs", "3", stdin=TOKEN_A + "\n"
    )
    assert (added["name"], len(added["fingerprint"]), added["max_concurrent_runs"]) == (
        "acme",
        8,
        3,
    )
    again = session.run("accounts", "add", "--name", "acme", stdin=TOKEN_A + "\n")
    assert again.returncode == 2
    listed = outcomes.only(session.json("accounts", "list"))
    assert listed["fingerprint"] == added["fingerprint"]
    assert session.run("accounts", "list").returncode == 0
    changed = session.json("accounts", "set", "--name", "acme", "--daily-cap-usd", "25")
    assert (changed["daily_cap_usd"], changed["max_concurrent_runs"]) == (25.0, 3)
    unknown = session.run(
        "sources", "add", "--brand", BRAND, "--platform", "instagram", "--capability", "posts",
        "--identifier", "@acme", "--account", "nobody",
    )  # fmt: skip
    assert unknown.returncode == 2
    for platform, capability, identifier in (
        ("instagram", "posts", "@acme"),
        ("tiktok", "profile_videos", "@acme"),
    ):
        source = session.json(
            "sources", "add", "--brand", BRAND, "--platform", platform,
            "--capability", capability, "--identifier", identifier, "--account", "acme",
        )  # fmt: skip
        assert source["account"] == "acme"
    assert session.run("accounts", "remove", "--name", "acme").returncode == 2  # in use
    job = session.json("enqueue", "--brand", BRAND)

    port = _free_port()
    worker_env = dict(session.environ, KAIRO_APIFY_SIMULATOR="true", KAIRO_HTTP_PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kairo_ingest", "run", "--concurrency", "4"],
        env=worker_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            shown = session.json("jobs", "show", job["id"])
            if shown["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.3)
        assert shown["status"] == "succeeded", shown
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            metrics_text = answer.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    session.printed += [out, err, metrics_text]
    assert 'kairo_apify_spent_usd_total{account="acme"' in metrics_text
    assert shown["evidence_status"]["cost_usd"] > 0
    assert '"apify_account_client"' in err  # the worker did use the account's own client

    costs = session.json("costs", "--account", "acme")
    assert {row["actor_id"] for row in costs} == {
        "apify~instagram-scraper",
        "clockworks~tiktok-scraper",
    }
    assert all(row["usage_total_usd"] > 0 and row["account"] == "acme" for row in costs)
    assert session.run("costs", "--brand", BRAND).returncode == 0

    dump = asyncio.run(_dump(db_url))
    assert "acme" in dump
    everything = "\n".join(session.printed)
    for secret in (TOKEN_A, DEFAULT_TOKEN, KEY):
        assert secret not in everything
        assert secret not in dump
