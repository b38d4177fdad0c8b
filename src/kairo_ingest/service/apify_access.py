"""Which Apify the service talks to: the real API, a configured URL, or the built-in simulator.

The built-in simulator is used only when asked for: by ``demo`` (which has no token to
offer on a fresh machine) or with KAIRO_APIFY_SIMULATOR=true. ``run`` without
KAIRO_APIFY_TOKEN is a configuration error (exit 2), never a silent fake: a secret that
was not mounted must not fill a real database with simulated evidence. The simulator's
runs are quick (durations scaled by ``time_factor``) and its datasets carry the real item
shapes, with some error items, items without ids and duplicates, as real actors produce.

The simulator is a package of its own (``kairo-apify-sim``, ``simulator/`` in the
repository), not part of the product's wheel: it is imported here, lazily, only when it is
asked for, and its absence is a configuration error (exit 2) that says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

from kairo_ingest import config, errors, logs
from kairo_ingest.apify import client as apify_client

log = logs.get(__name__)

SIMULATOR_LABEL = "simulator"
SIMULATOR_PACKAGE = "kairo_apify_sim"
INSTALL_HINT = (
    "the Apify simulator is not installed: install it with `pip install ./simulator` "
    "from the kairo-ingest repository (scripts/bootstrap does)"
)

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


@contextlib.contextmanager
def installed_simulator() -> Iterator[None]:
    """Wraps the lazy import of the simulator: its absence becomes a ConfigError (exit 2)
    that says how to install it; anything else it lacks is left as it is."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != SIMULATOR_PACKAGE:
            raise  # the simulator is there but something it needs is not
        raise errors.ConfigError(INSTALL_HINT, variable="KAIRO_APIFY_SIMULATOR") from None


def require_simulator(settings: config.Settings, *, demo: bool = False) -> None:
    """When the simulator will be used, it is installed: checked before anything opens."""
    if wants_builtin(settings, demo=demo):
        with installed_simulator():
            importlib.import_module(SIMULATOR_PACKAGE)


def wants_builtin(settings: config.Settings, *, demo: bool = False) -> bool:
    """The built-in simulator: asked for explicitly, or ``demo`` with no token."""
    return settings.uses_simulator or (demo and settings.apify_token is None)


def require_token(settings: config.Settings) -> None:
    """Refuse to start without a token unless the simulator was asked for (exit 2), and
    with the simulator asked for but not installed (exit 2)."""
    require_simulator(settings)
    if settings.uses_simulator or settings.apify_token is not None:
        return
    raise errors.ConfigError(
        "KAIRO_APIFY_TOKEN is not set: `run` needs an Apify API token "
        "(set KAIRO_APIFY_SIMULATOR=true to use the built-in simulator instead)",
        variable="KAIRO_APIFY_TOKEN",
    )


def label(settings: config.Settings, *, demo: bool = False) -> str:
    """What ``/readyz`` reports: ``simulator`` or the API's host (never the token)."""
    if wants_builtin(settings, demo=demo):
        return SIMULATOR_LABEL
    parts = urllib.parse.urlsplit(settings.apify_base_url)
    return parts.hostname or settings.apify_base_url


@contextlib.asynccontextmanager
async def client(
    settings: config.Settings,
    *,
    simulator: dict[str, Any] | None = None,
    demo: bool = False,
) -> AsyncIterator[apify_client.ApifyClient]:
    if wants_builtin(settings, demo=demo):
        with installed_simulator():
            from kairo_apify_sim import server as sim_server
        async with sim_server.running(simulator or BUILTIN_SIMULATOR) as sim:
            log.warning(
                "apify_simulator_in_use",
                reason="demo" if not settings.uses_simulator else "KAIRO_APIFY_SIMULATOR=true",
                base_url=sim.base_url,
            )
            async with apify_client.ApifyClient(sim.base_url, None) as api:
                yield api
        return
    require_token(settings)
    token = settings.apify_token.get_secret_value() if settings.apify_token else None
    async with apify_client.ApifyClient(settings.apify_base_url, token) as api:
        yield api
