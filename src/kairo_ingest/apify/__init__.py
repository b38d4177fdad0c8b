"""The Apify adapter: an async client for the Apify API v2, and start reconciliation.

Modules, each small enough to read in one sitting:

- :mod:`~kairo_ingest.apify.models`     :class:`RunInfo`, :class:`UnparsableItem`, the parsers
- :mod:`~kairo_ingest.apify.mapping`    HTTP answers and httpx failures -> our typed errors
- :mod:`~kairo_ingest.apify.transport`  the one shared ``httpx.AsyncClient`` and single attempts
- :mod:`~kairo_ingest.apify.retrying`   the tenacity policy: jittered backoff inside a deadline
- :mod:`~kairo_ingest.apify.pages`      dataset pages decoded item by item (one bad item never
  costs its page)
- :mod:`~kairo_ingest.apify.client`     :class:`ApifyClient`, the methods the pipeline calls
- :mod:`~kairo_ingest.apify.reconcile`  starting a run without risking a duplicate
- :mod:`~kairo_ingest.apify.ports`      the Apify port: the calls the pipeline makes

Import the modules, not names: ``from kairo_ingest.apify import client as apify_client``.
See docs/apify-runs.md.
"""

from __future__ import annotations
