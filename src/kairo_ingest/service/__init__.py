"""The composition root for the long-running service: health server, signals, worker."""
