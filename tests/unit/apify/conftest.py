"""Fixtures for the Apify client's unit tests: a respx router as the client's transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import apify_fakes
import httpx
import pytest
import respx

from kairo_ingest.apify import client as apify_client


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(base_url=apify_fakes.BASE, assert_all_called=False)


@pytest.fixture
def sleeps() -> apify_fakes.SleepRecorder:
    return apify_fakes.SleepRecorder()


@pytest.fixture
async def make_client(
    router: respx.MockRouter, sleeps: apify_fakes.SleepRecorder
) -> AsyncIterator[Callable[..., apify_client.ApifyClient]]:
    made: list[apify_client.ApifyClient] = []

    def make(**overrides: Any) -> apify_client.ApifyClient:
        options: dict[str, Any] = {
            "transport": httpx.MockTransport(router.async_handler),
            "backoff_base_seconds": 0.5,
            "backoff_cap_seconds": 10.0,
            "sleep": sleeps,
        }
        options.update(overrides)
        if isinstance(options.get("clock"), apify_fakes.FakeClock):
            sleeps.clock = options["clock"]
        client = apify_client.ApifyClient(apify_fakes.BASE, apify_fakes.TOKEN, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()
