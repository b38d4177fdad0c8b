"""``accounts rotate-key``: re-encrypt every stored token under the first key.

The command runs in-process (``cli_main.main`` on a thread of its own, since it calls
``asyncio.run``), against a real database; the worker's side is
:class:`kairo_ingest.pipeline.tenants.Tenants`, which decrypts a named account's token
the first time a source needs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import pathlib
import sys

import pytest
import spend_kit
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, redaction, secretbox
from kairo_ingest.apify import client as apify_client
from kairo_ingest.cli import main as cli_main
from kairo_ingest.db import accounts
from kairo_ingest.pipeline import tenants
from support import outcomes

KEY_A = secretbox.generate_key()
KEY_B = secretbox.generate_key()
KEY_C = secretbox.generate_key()
TOKENS = {"acme": spend_kit.TOKEN_A, "globex": spend_kit.TOKEN_B}
SECRETS = (spend_kit.TOKEN_A, spend_kit.TOKEN_B, KEY_A, KEY_B, KEY_C)
NOWHERE = "http://127.0.0.1:9"  # the clients built here never send a request


@dataclasses.dataclass
class Done:
    code: int
    out: str
    err: str


@dataclasses.dataclass
class Cli:
    """``kairo-ingest`` in this process, with KAIRO_SECRET_KEY set per call."""

    db_url: str
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    printed: list[str] = dataclasses.field(default_factory=list)

    async def __call__(self, *args: str, key: str | None, stdin: str = "") -> Done:
        if key is None:
            self.monkeypatch.delenv("KAIRO_SECRET_KEY", raising=False)
        else:
            self.monkeypatch.setenv("KAIRO_SECRET_KEY", key)
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        self.capsys.readouterr()
        code = await asyncio.to_thread(cli_main.main, list(args))
        captured = self.capsys.readouterr()
        self.printed += [captured.out, captured.err]
        return Done(code, captured.out, captured.err)

    async def add(self, name: str, token: str, *, key: str) -> dict[str, str]:
        done = await self("accounts", "add", "--name", name, "--json", key=key, stdin=token + "\n")
        assert done.code == 0, done.err
        added: dict[str, str] = json.loads(done.out)
        return added


@pytest.fixture
def cli(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
) -> Cli:
    # main() configures logging onto the captured stderr; keep the process's own.
    monkeypatch.setattr(logs, "configure", lambda **_: None)
    monkeypatch.chdir(tmp_path)  # no .env
    for name in [n for n in os.environ if n.startswith("KAIRO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KAIRO_DATABASE_URL", db_url)
    return Cli(db_url, monkeypatch, capsys)


async def _worker_token(engine: sa_async.AsyncEngine, key: str, name: str) -> str:
    """The token a worker with ``KAIRO_SECRET_KEY=key`` gets for account ``name``'s sources."""
    seen: list[str] = []

    def factory(token: str) -> apify_client.ApifyClient:
        seen.append(token)
        return apify_client.ApifyClient(NOWHERE, token)

    async with apify_client.ApifyClient(NOWHERE, spend_kit.DEFAULT_TOKEN) as default_api:
        pool = tenants.Tenants(
            engine,
            default_api=default_api,
            default_limits=tenants.Limits(max_concurrent_runs=1, max_memory_mbytes=1024),
            box=secretbox.SecretBox(key),
            factory=factory,
        )
        try:
            await pool.resolve(name)
        finally:
            await pool.aclose()
    return outcomes.only(seen)


async def _worker_tokens(engine: sa_async.AsyncEngine, key: str) -> dict[str, str]:
    return {name: await _worker_token(engine, key, name) for name in TOKENS}


async def _ciphertexts(engine: sa_async.AsyncEngine) -> dict[str, str]:
    return {a.name: a.token_ciphertext for a in await accounts.list_accounts(engine)}


def _assert_one_clean_line(err: str) -> None:
    assert err.startswith("kairo-ingest: error: ")
    assert err.count("\n") == 1, err
    assert redaction.MASK not in err  # nothing had to be masked: no secret was in it
    for secret in SECRETS:
        assert secret not in err


async def test_after_rotate_key_the_new_key_alone_opens_every_token(
    cli: Cli, engine: sa_async.AsyncEngine
) -> None:
    added = {name: await cli.add(name, token, key=KEY_A) for name, token in TOKENS.items()}
    old_box, new_box = secretbox.SecretBox(KEY_A), secretbox.SecretBox(KEY_B)
    for name, token in TOKENS.items():
        assert added[name]["fingerprint"] == old_box.fingerprint(token)

    # Before: a worker holding only the new key cannot open the tokens.
    for name in TOKENS:
        with pytest.raises(errors.ConfigError, match="KAIRO_SECRET_KEY"):
            await _worker_token(engine, KEY_B, name)
    # Putting the new key in front changes no stored fingerprint by itself.
    listed = await cli("accounts", "list", "--json", key=f"{KEY_B},{KEY_A}")
    assert {r["name"]: r["fingerprint"] for r in json.loads(listed.out)} == {
        name: added[name]["fingerprint"] for name in TOKENS
    }

    rotated = await cli("accounts", "rotate-key", key=f"{KEY_B},{KEY_A}")
    assert rotated.code == 0, rotated.err
    lines = rotated.out.splitlines()
    assert lines[0].split() == ["NAME", "FINGERPRINT", "PREVIOUS_FINGERPRINT"]
    assert [line.split() for line in lines[1:3]] == [
        [name, new_box.fingerprint(token), old_box.fingerprint(token)]
        for name, token in sorted(TOKENS.items())
    ]
    assert lines[3] == "2 account token(s) re-encrypted under the first key of KAIRO_SECRET_KEY"
    assert len(lines) == 4

    # After: the new key alone is enough, for the worker and for the CLI.
    assert await outcomes.value_of(_worker_tokens(engine, KEY_B)) == TOKENS
    listed = await cli("accounts", "list", "--json", key=KEY_B)
    fingerprints = {r["name"]: r["fingerprint"] for r in json.loads(listed.out)}
    assert fingerprints == {name: new_box.fingerprint(token) for name, token in TOKENS.items()}
    # Every fingerprint is keyed alike again: the same token added now shows the same one.
    again = await cli.add("acme-copy", spend_kit.TOKEN_A, key=KEY_B)
    assert again["fingerprint"] == fingerprints["acme"]

    # Idempotent: a second run rewrites the ciphertexts and keeps the fingerprints.
    before = await _ciphertexts(engine)
    second = await cli("accounts", "rotate-key", "--json", key=KEY_B)
    assert second.code == 0, second.err
    report = json.loads(second.out)
    assert report["rotated"] == 3
    assert all(r["fingerprint"] == r["previous_fingerprint"] for r in report["accounts"])
    after = await _ciphertexts(engine)
    assert after.keys() == before.keys()
    assert all(after[name] != before[name] for name in after)
    assert await _worker_tokens(engine, KEY_B) == TOKENS


async def test_rotate_key_without_a_key_exits_2_with_one_line(
    cli: Cli, engine: sa_async.AsyncEngine
) -> None:
    await cli.add("acme", spend_kit.TOKEN_A, key=KEY_A)
    before = await _ciphertexts(engine)
    for key in (None, "  "):  # unset, or blank (which counts as unset)
        done = await cli("accounts", "rotate-key", key=key)
        assert done.code == 2
        assert done.out == ""
        assert "KAIRO_SECRET_KEY is not set" in done.err
        _assert_one_clean_line(done.err)
    assert await _ciphertexts(engine) == before


async def test_an_undecryptable_token_exits_2_naming_the_account_and_changes_nothing(
    cli: Cli, engine: sa_async.AsyncEngine
) -> None:
    await cli.add("acme", spend_kit.TOKEN_A, key=KEY_A)
    await cli.add("globex", spend_kit.TOKEN_B, key=KEY_C)  # a key the rotation lacks
    await cli.add("initech", "apify_api_initechIIIIIIIIIIIIIIII0003", key=KEY_A)
    before = await spend_kit.dump(engine, "accounts")

    done = await cli("accounts", "rotate-key", key=f"{KEY_B},{KEY_A}")
    assert done.code == 2
    assert done.out == ""
    assert "account 'globex'" in done.err
    assert "no token was changed" in done.err
    _assert_one_clean_line(done.err)
    # All or nothing: acme sorts before globex and was not rewritten either.
    assert await spend_kit.dump(engine, "accounts") == before


async def test_neither_the_output_nor_the_table_holds_a_token_in_clear(
    cli: Cli, engine: sa_async.AsyncEngine
) -> None:
    for name, token in TOKENS.items():
        await cli.add(name, token, key=KEY_A)
    for args in (("accounts", "rotate-key"), ("accounts", "rotate-key", "--json")):
        done = await cli(*args, key=f"{KEY_B},{KEY_A}")
        assert done.code == 0, done.err
        assert "acme" in done.out
        assert "globex" in done.out
    table = await spend_kit.dump(engine, "accounts")
    assert "acme" in table
    assert "globex" in table
    everything = "\n".join(cli.printed)
    for secret in SECRETS:
        assert secret not in everything
        assert secret not in table
