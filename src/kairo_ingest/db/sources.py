"""Source connections: add (idempotent), list, disable, and the enabled sources of a brand."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors
from kairo_ingest.db import tables
from kairo_ingest.domain import registry

_t = tables.source_connections


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    id: uuid.UUID
    brand_id: uuid.UUID
    platform: str
    capability: str
    identifier: str
    enabled: bool
    settings: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    account: str | None = None
    """The Apify account that runs this source; None is the implicit ``default``."""

    @property
    def key(self) -> str:
        return f"{self.platform}.{self.capability}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "brand_id": str(self.brand_id),
            "platform": self.platform,
            "capability": self.capability,
            "identifier": self.identifier,
            "enabled": self.enabled,
            "settings": self.settings,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "account": self.account or "default",
        }


def _row(row: sa.Row[Any]) -> Source:
    m = row._mapping
    return Source(**{f.name: m[f.name] for f in dataclasses.fields(Source)})


async def add(
    engine: sa_async.AsyncEngine,
    *,
    brand_id: uuid.UUID,
    platform: str,
    capability: str,
    identifier: str,
    settings: dict[str, Any] | None = None,
    account: str | None = None,
) -> tuple[Source, bool]:
    """Insert a source, or return the existing one; the bool says whether it was created.

    ``account`` (a name from ``accounts``; None or ``default`` is the implicit default
    account) is set on the existing source too when given: ``default`` moves it back to
    the default account, None leaves its account as it is.
    """
    move_to_default = account == "default"
    if account == "default":
        account = None
    # UsageError (exit 2): an unknown pair (listing the valid ones), bad identifier or settings.
    normalized = registry.validate_source(platform, capability, identifier, settings or {})
    spec = registry.get_spec(platform, capability)
    platform, capability = spec.platform.value, spec.capability.value
    values = {
        "brand_id": brand_id,
        "platform": platform,
        "capability": capability,
        "identifier": normalized,
        "settings": settings or {},
        "account": account,
    }
    insert = (
        pg.insert(_t)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["brand_id", "platform", "capability", "identifier"])
        .returning(*_t.c)
    )
    async with engine.begin() as conn:
        if account is not None:
            known = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(tables.accounts)
                .where(tables.accounts.c.name == account)
            )
            if not known:
                raise errors.UsageError(f"no account named {account!r} (see `accounts list`)")
        created = (await conn.execute(insert)).first()
        if created is not None:
            return _row(created), True
        if account is not None or move_to_default:
            await conn.execute(
                sa.update(_t)
                .where(
                    _t.c.brand_id == brand_id,
                    _t.c.platform == platform,
                    _t.c.capability == capability,
                    _t.c.identifier == normalized,
                )
                .values(account=account, updated_at=sa.func.now())
            )
        existing = (
            await conn.execute(
                sa.select(_t).where(
                    _t.c.brand_id == brand_id,
                    _t.c.platform == platform,
                    _t.c.capability == capability,
                    _t.c.identifier == normalized,
                )
            )
        ).one()
        return _row(existing), False


async def list_sources(
    engine: sa_async.AsyncEngine, *, brand_id: uuid.UUID | None = None, enabled_only: bool = False
) -> list[Source]:
    query = sa.select(_t).order_by(_t.c.brand_id, _t.c.platform, _t.c.capability, _t.c.identifier)
    if brand_id is not None:
        query = query.where(_t.c.brand_id == brand_id)
    if enabled_only:
        query = query.where(_t.c.enabled.is_(True))
    async with engine.connect() as conn:
        return [_row(r) for r in await conn.execute(query)]


async def disable(engine: sa_async.AsyncEngine, source_id: uuid.UUID) -> Source:
    update = (
        sa.update(_t)
        .where(_t.c.id == source_id)
        .values(enabled=False, updated_at=sa.func.now())
        .returning(*_t.c)
    )
    async with engine.begin() as conn:
        row = (await conn.execute(update)).first()
    if row is None:
        raise errors.UsageError(f"no source with id {source_id}")
    return _row(row)
