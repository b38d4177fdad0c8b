"""The operator console: a read-mostly web UI over the queue, the runs and the evidence.

Service layer: it reads through ``db``/``queue`` and acts only through
:mod:`kairo_ingest.queue.jobs` (retry, cancel). Only ``cli`` and ``service`` import it.
See docs/console.md.
"""
