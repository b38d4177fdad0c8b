"""A real HTTP server that behaves like the parts of the Apify API v2 we use.

- :mod:`~kairo_ingest.simulator.config`    what the simulator does: durations, outcomes, faults
- :mod:`~kairo_ingest.simulator.datasets`  pure, deterministic dataset items in real shapes
- :mod:`~kairo_ingest.simulator.state`     runs, their lifecycle and the counters
- :mod:`~kairo_ingest.simulator.faults`    injected failures
- :mod:`~kairo_ingest.simulator.platform`  platform habits it can copy: input defaults, signed
  storage URLs, pricing
- :mod:`~kairo_ingest.simulator.app`       the raw ASGI application (routing, envelopes)
- :mod:`~kairo_ingest.simulator.server`    uvicorn: ``serve``, ``running``, ``running_in_thread``

Run it on its own with ``python -m kairo_ingest.simulator --port 8765``. See docs/apify-runs.md
(the simulator, held to the platform).
"""

from __future__ import annotations
