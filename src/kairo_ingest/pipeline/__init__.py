"""The ingestion pipeline: composes the database and Apify adapters with the pure domain.

- :mod:`~kairo_ingest.pipeline.compile_job`  the brand compile job: every enabled source
  refreshed, reused or skipped, concurrently
- :mod:`~kairo_ingest.pipeline.openings`     the opening reads of jobs that start together
- :mod:`~kairo_ingest.pipeline.source_run`   one source through one Apify run: intent,
  start or adopt, wait, fetch
- :mod:`~kairo_ingest.pipeline.ports`        the run-store port: what a source's run asks of
  the database
- :mod:`~kairo_ingest.pipeline.pg_runs`      the run store on PostgreSQL
- :mod:`~kairo_ingest.pipeline.store`        dataset pages and their evidence, in fenced
  transactions
- :mod:`~kairo_ingest.pipeline.offload`      CPU-bound page work on one thread, off the loop
- :mod:`~kairo_ingest.pipeline.tx`           every database unit of work, retried while the
  database is briefly away (within the lease)
- :mod:`~kairo_ingest.pipeline.budget`       run slots from the account's shared budget,
  and daily caps
- :mod:`~kairo_ingest.pipeline.tenants`      which Apify account runs a source, and its client
- :mod:`~kairo_ingest.pipeline.run_ends`     one way to record a run's end
- :mod:`~kairo_ingest.pipeline.ledger`       the run ledger service
- :mod:`~kairo_ingest.pipeline.deps`         what the pipeline needs from the composition root

Nothing here knows about the worker that calls it. See docs/apify-runs.md and
docs/ledger.md.
"""
