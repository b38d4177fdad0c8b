"""Which Apify the service talks to: the real API, a configured URL, or the built-in simulator.

With no KAIRO_APIFY_TOKEN and the default base URL there is nothing real to talk to,
so the simulator runs in this process and the client points at it. Its runs are
quick (durations scaled by ``time_factor``) and its datasets carry the real item shapes,
with some error items, items without ids and duplicates, as real actors produce.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from kairo_ingest import config, logs
from kairo_ingest.apify import client as apify_client
from kairo_ingest.simulator import server as sim_server

log = logs.get(__name__)

BUILTIN_SIMULATOR: dict[str, Any] = {
    "seed": 7,
    "time_factor": 0.03,
    "duration_min_seconds": 5,
    "duration_max_seconds": 60,
    "outcome_weights": {"SUCCEEDED": 1.0},
    "error_item_share": 0.1,
    "missing_id_share": 0.05,
    "duplicate_share": 0.05,
}


@contextlib.asynccontextmanager
async def client(
    settings: config.Settings, *, simulator: dict[str, Any] | None = None
) -> AsyncIterator[apify_client.ApifyClient]:
    if settings.uses_simulator:
        async with sim_server.running(simulator or BUILTIN_SIMULATOR) as sim:
            log.warning(
                "apify_simulator_in_use",
                reason="KAIRO_APIFY_TOKEN is unset",
                base_url=sim.base_url,
            )
            async with apify_client.ApifyClient(sim.base_url, None) as api:
                yield api
        return
    token = settings.apify_token.get_secret_value() if settings.apify_token else None
    async with apify_client.ApifyClient(settings.apify_base_url, token) as api:
        yield api
