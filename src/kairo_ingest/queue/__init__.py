"""The PostgreSQL job queue: leases with fencing tokens, classified retries and a reaper.

``sql`` holds every statement; ``jobs`` is the API (enqueue, claim, heartbeat, complete,
fail, release, fence, reap, cancel, retry, prune, stats); ``dberrors`` maps driver
errors onto :mod:`kairo_ingest.errors` at this boundary.
"""
