"""The ingestion pipeline: composes the database and Apify adapters with the pure domain.

``compile`` is the brand compile job; ``source_run`` takes one source through an Apify
run (intent, start or adopt, wait, fetch); ``store`` writes dataset pages and evidence
in fenced transactions. Nothing here knows about the worker that calls it.
"""
