"""Which Apify account (token, limits, daily cap) runs a source, and its client.

The old system had a token per user but its worker used one global token for everyone;
here each source names its account and gets that account's client. The ``default``
account is implicit: the service's own client (``KAIRO_APIFY_TOKEN``) and the limits from
``KAIRO_APIFY_ACCOUNT_*``. A named account's token is decrypted when first used (and again
when its ciphertext changes), registered with the redaction, and its client cached.

``accounts rotate-key`` rewrites every ciphertext (Fernet output is never the same twice)
but no token: a changed ciphertext that still opens to the same token keeps its client.
A client replaced because the token really changed may still be waiting on runs of jobs
in flight, so it is kept and closed with the others, never dropped open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
import hashlib
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


@dataclasses.dataclass(slots=True)
class _Cached:
    ciphertext: str
    token_digest: bytes  # tells a re-encrypted token from a new one, without keeping it
    api: apify_client.ApifyClient


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
        self._clients: dict[str, _Cached] = {}
        self._replaced: list[apify_client.ApifyClient] = []  # closed with the others
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
            if cached is not None and cached.ciphertext == row.token_ciphertext:
                return cached.api
            if self._box is None:
                raise errors.JobError(
                    f"account {row.name!r} has an encrypted token but KAIRO_SECRET_KEY is not set",
                    kind=errors.ErrorKind.CONFIG,
                    retryable=False,
                )
            token = self._box.decrypt(row.token_ciphertext)  # registers it with redaction
            digest = hashlib.sha256(token.encode()).digest()
            if cached is not None and cached.token_digest == digest:
                cached.ciphertext = row.token_ciphertext  # re-encrypted, same token
                return cached.api
            api = self._factory(token)
            if cached is not None:
                self._replaced.append(cached.api)
            self._clients[row.name] = _Cached(row.token_ciphertext, digest, api)
            log.info("apify_account_client", account=row.name, fingerprint=row.fingerprint)
            return api

    async def aclose(self) -> None:
        for api in [c.api for c in self._clients.values()] + self._replaced:
            await api.aclose()
        self._clients.clear()
        self._replaced.clear()
