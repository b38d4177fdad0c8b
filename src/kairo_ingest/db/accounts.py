"""Apify accounts: a name, an encrypted token, limits and a daily cap.

The token is stored only as Fernet ciphertext (:mod:`kairo_ingest.secretbox`); nothing
here returns it in clear. The ``default`` account is implicit (token and limits come
from the settings) and is not a row. The fingerprint is stored with the ciphertext: it
is computed when the token is added and again when the tokens are re-encrypted under a
new key (:func:`rewrite_tokens`), never when a row is read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import dberrors, tables
from kairo_ingest.domain import statuses

DEFAULT = "default"
_t = tables.accounts


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    """An account row. ``token_ciphertext`` is never printed (see :meth:`to_json`)."""

    id: uuid.UUID
    name: str
    token_ciphertext: str = dataclasses.field(repr=False)
    fingerprint: str
    max_concurrent_runs: int | None
    max_memory_mbytes: int | None
    daily_cap_usd: decimal.Decimal | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at.isoformat(),
            "max_concurrent_runs": self.max_concurrent_runs,
            "max_memory_mbytes": self.max_memory_mbytes,
            "daily_cap_usd": None if self.daily_cap_usd is None else float(self.daily_cap_usd),
        }


def _row(row: sa.Row[Any]) -> Account:
    m = row._mapping
    return Account(**{f.name: m[f.name] for f in dataclasses.fields(Account)})


async def add(
    engine: sa_async.AsyncEngine,
    *,
    name: str,
    token_ciphertext: str,
    fingerprint: str,
    max_concurrent_runs: int | None,
    max_memory_mbytes: int | None,
    daily_cap_usd: float | None,
) -> Account:
    if name == DEFAULT:
        raise errors.UsageError(
            "the `default` account is implicit: its token is KAIRO_APIFY_TOKEN and its limits "
            "KAIRO_APIFY_ACCOUNT_*"
        )
    insert = (
        pg.insert(_t)
        .values(
            name=name,
            token_ciphertext=token_ciphertext,
            fingerprint=fingerprint,
            max_concurrent_runs=max_concurrent_runs,
            max_memory_mbytes=max_memory_mbytes,
            daily_cap_usd=daily_cap_usd,
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(*_t.c)
    )
    async with engine.begin() as conn:
        row = (await conn.execute(insert)).first()
    if row is None:
        raise errors.UsageError(f"an account named {name!r} exists (remove it first)")
    return _row(row)


async def list_accounts(engine: sa_async.AsyncEngine) -> list[Account]:
    async with engine.connect() as conn:
        return [_row(r) for r in await conn.execute(sa.select(_t).order_by(_t.c.name))]


async def get(conn: sa_async.AsyncConnection, name: str) -> Account | None:
    row = (await conn.execute(sa.select(_t).where(_t.c.name == name))).first()
    return _row(row) if row is not None else None


async def update_limits(engine: sa_async.AsyncEngine, name: str, values: dict[str, Any]) -> Account:
    statement = (
        sa.update(_t)
        .where(_t.c.name == name)
        .values(**values, updated_at=sa.func.now())
        .returning(*_t.c)
    )
    async with engine.begin() as conn:
        row = (await conn.execute(statement)).first()
    if row is None:
        raise errors.UsageError(f"no account named {name!r}")
    return _row(row)


async def remove(engine: sa_async.AsyncEngine, name: str) -> Account:
    async with engine.begin() as conn:
        used = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(tables.source_connections)
            .where(tables.source_connections.c.account == name)
        )
        if used:
            raise errors.UsageError(
                f"account {name!r} is used by {used} source(s); move or disable them first"
            )
        runs = tables.apify_runs
        going = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(runs)
            .where(
                runs.c.account == name,
                runs.c.status.not_in(sorted(statuses.RUN_ENDED)),
            )
        )
        if going:
            # Every request about a run needs the token of the account that started it.
            raise errors.UsageError(
                f"account {name!r} has {going} Apify run(s) that have not ended; the run "
                "ledger follows them with its token (see `kairo-ingest ledger`)"
            )
        row = (await conn.execute(sa.delete(_t).where(_t.c.name == name).returning(*_t.c))).first()
    if row is None:
        raise errors.UsageError(f"no account named {name!r}")
    return _row(row)


Rekey = Callable[[Account], tuple[str, str]]
"""An account row to its new ``(token_ciphertext, fingerprint)``."""


async def rewrite_tokens(
    engine: sa_async.AsyncEngine, rekey: Rekey
) -> list[tuple[Account, Account]]:
    """Give every account the ciphertext and fingerprint ``rekey`` computes, all or nothing.

    One transaction: if ``rekey`` raises for any row, no row changes. The table is locked
    against writes meanwhile (SHARE ROW EXCLUSIVE: reads such as the worker's go on), so
    an account added or changed during the rewrite cannot keep its old ciphertext, and
    two rewrites run one after the other. Returns ``(before, after)`` per account, by name.
    """
    with dberrors.mapped("rewrite account tokens"):
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'LOCK TABLE "{_t.name}" IN SHARE ROW EXCLUSIVE MODE'))
            rows = [_row(r) for r in await conn.execute(sa.select(_t).order_by(_t.c.name))]
            new_values = [rekey(row) for row in rows]  # every row before any write
            done = []
            for before, (ciphertext, fingerprint) in zip(rows, new_values, strict=True):
                statement = (
                    sa.update(_t)
                    .where(_t.c.id == before.id)
                    .values(
                        token_ciphertext=ciphertext,
                        fingerprint=fingerprint,
                        updated_at=sa.func.now(),
                    )
                    .returning(*_t.c)
                )
                done.append((before, _row((await conn.execute(statement)).one())))
    return done


async def exists(engine: sa_async.AsyncEngine, name: str) -> bool:
    async with engine.connect() as conn:
        return await get(conn, name) is not None


async def set_brand_cap(
    engine: sa_async.AsyncEngine, brand_id: uuid.UUID, daily_cap_usd: float | None
) -> None:
    """A brand's own daily cap (None removes it)."""
    b = tables.brand_caps
    async with engine.begin() as conn:
        if daily_cap_usd is None:
            await conn.execute(sa.delete(b).where(b.c.brand_id == brand_id))
            return
        insert = pg.insert(b).values(brand_id=brand_id, daily_cap_usd=daily_cap_usd)
        await conn.execute(
            insert.on_conflict_do_update(
                index_elements=["brand_id"],
                set_={"daily_cap_usd": insert.excluded.daily_cap_usd, "updated_at": sa.func.now()},
            )
        )
