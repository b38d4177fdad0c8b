"""A real HTTP server that behaves like the parts of the Apify API v2 we use.

- :mod:`~kairo_apify_sim.config`    what the simulator does: durations, outcomes, faults
- :mod:`~kairo_apify_sim.datasets`  pure, deterministic dataset items in real shapes
- :mod:`~kairo_apify_sim.state`     runs, their lifecycle and the counters
- :mod:`~kairo_apify_sim.faults`    injected failures
- :mod:`~kairo_apify_sim.platform`  platform habits it can copy: input defaults, signed
  storage URLs, pricing
- :mod:`~kairo_apify_sim.app`       the ASGI application (Starlette routing, envelopes)
- :mod:`~kairo_apify_sim.server`    uvicorn: ``serve``, ``running``, ``running_in_thread``

Run it on its own with ``python -m kairo_apify_sim --port 8765``.
"""

from __future__ import annotations
