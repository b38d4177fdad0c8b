"""The worker: runs registered job handlers over the queue.

- :mod:`~kairo_ingest.worker.core`          the claim loop: jobs into free slots, one task each
- :mod:`~kairo_ingest.worker.claiming`      the claim's connection and round trips
- :mod:`~kairo_ingest.worker.tasks`         the job tasks and the slots that track them
- :mod:`~kairo_ingest.worker.lease_keeper`  heartbeats, lease loss, cancels, hand-backs
- :mod:`~kairo_ingest.worker.finisher`      the final status writes, batched
- :mod:`~kairo_ingest.worker.listener`      LISTEN wake-ups
- :mod:`~kairo_ingest.worker.maintenance`   the reaper, the promoter, the sampler, the pruners,
  the raw-item partitions
- :mod:`~kairo_ingest.worker.shutdown`      the whole exit within the grace
- :mod:`~kairo_ingest.worker.dedicated`     a pooled connection held by one loop
- :mod:`~kairo_ingest.worker.gc_tuning`     the garbage collector's settings
- :mod:`~kairo_ingest.worker.context`       what a handler sees, and what the worker keeps
- :mod:`~kairo_ingest.worker.parameters`    every setting of a worker in one frozen value
- :mod:`~kairo_ingest.worker.ports`         the queue port: what the worker asks of the queue
- :mod:`~kairo_ingest.worker.pg_queue`      the queue port's PostgreSQL adapter

See docs/queue.md.
"""
