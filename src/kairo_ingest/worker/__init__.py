"""The worker: runs registered job handlers over the queue (``runner``), with batched final
writes (``finisher``), LISTEN wake-ups (``listener``) and built-in kinds (``builtin``)."""
