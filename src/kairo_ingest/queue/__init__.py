"""The PostgreSQL job queue: leases with fencing tokens, classified retries and a reaper.

- :mod:`~kairo_ingest.queue.sql`      every statement, one named constant each
- :mod:`~kairo_ingest.queue.jobs`     the API: enqueue, claim, heartbeat (``beat``), fence,
  cancel, retry, inspection (``get``, ``list_jobs``, ``stats``, ``depth``), prune
- :mod:`~kairo_ingest.queue.endings`  the end of an attempt: complete, fail, release,
  give up, reap, hand back
- :mod:`~kairo_ingest.queue.upkeep`   deferred jobs made ready when due, and the ``workers``
  registry
- :mod:`~kairo_ingest.queue.history`  a job's attempt history
- :mod:`~kairo_ingest.queue.binds`    where an operation runs, and the JSON its statements take

Driver errors become :mod:`kairo_ingest.errors` at the database boundary
(:mod:`kairo_ingest.db.dberrors`), not here. See docs/queue.md.
"""
