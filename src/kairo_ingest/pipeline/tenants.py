"""Which Apify account (token, limits, daily cap) runs a source, and its client.

The old system had a token per user but its worker used one global token for everyone;
here each source names its account and gets that account's client. The ``default``
account is implicit: the service's own client (``KAIRO_APIFY_TOKEN``) and the limits from
``KAIRO_APIFY_ACCOUNT_*``. A named account's token is decrypted when first used (and again
when its ciphertext changes), registered with the redaction, and its client cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
from collections.abc import Callable

from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import errors, logs, secretbox
from kairo_ingest.apify import client as apify_client
from kairo_ingest.db import accounts

log = logs.get(__name__)

ClientFactory = Callable[[str], apify_client.ApifyClient]


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_concurrent_runs: int
    max_memory_mbytes: int
    daily_cap_usd: decimal.Decimal | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Tenant:
    account: str
    api: apify_client.ApifyClient
    limits: Limits


class Tenants:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        *,
        default_api: apify_client.ApifyClient,
        default_limits: Limits,
        box: secretbox.SecretBox | None,
        factory: ClientFactory,
    ) -> None:
        self._engine = engine
        self._default = Tenant(accounts.DEFAULT, default_api, default_limits)
        self._box = box
        self._factory = factory
        self._clients: dict[str, tuple[str, apify_client.ApifyClient]] = {}
        self._lock = asyncio.Lock()
        self.default_limits = default_limits

    async def resolve(self, account: str | None) -> Tenant:
        if account is None or account == accounts.DEFAULT:
            return self._default
        async with self._engine.connect() as conn:
            row = await accounts.get(conn, account)
        if row is None:
            raise errors.JobError(
                f"the source's Apify account {account!r} does not exist",
                kind=errors.ErrorKind.CONFIG,
                retryable=False,
            )
        d = self.default_limits
        limits = Limits(
            max_concurrent_runs=row.max_concurrent_runs or d.max_concurrent_runs,
            max_memory_mbytes=row.max_memory_mbytes or d.max_memory_mbytes,
            daily_cap_usd=row.daily_cap_usd,
        )
        return Tenant(account, await self._client(row), limits)

    async def _client(self, row: accounts.Account) -> apify_client.ApifyClient:
        async with self._lock:
            cached = self._clients.get(row.name)
            if cached is not None and cached[0] == row.token_ciphertext:
                return cached[1]
            if self._box is None:
                raise errors.JobError(
                    f"account {row.name!r} has an encrypted token but KAIRO_SECRET_KEY is not set",
                    kind=errors.ErrorKind.CONFIG,
                    retryable=False,
                )
            token = self._box.decrypt(row.token_ciphertext)  # registers it with redaction
            api = self._factory(token)
            self._clients[row.name] = (row.token_ciphertext, api)
            log.info("apify_account_client", account=row.name, fingerprint=row.fingerprint)
            return api

    async def aclose(self) -> None:
        for _, api in self._clients.values():
            await api.aclose()
        self._clients.clear()
