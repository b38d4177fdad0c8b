"""The ingestion pipeline: composes the database and Apify adapters with the pure domain.

``compile`` is the brand compile job; ``source_run`` takes one source through an Apify
run (intent, start or adopt, wait, fetch); ``store`` writes dataset pages and evidence
in fenced transactions. Every database unit of work goes through ``tx`` (retried while
the database is briefly away, within the lease); CPU-bound page work goes through
``offload`` (one thread, off the event loop). Nothing here knows about the worker that
calls it.
"""
