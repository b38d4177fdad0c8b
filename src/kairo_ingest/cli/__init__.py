"""The command line: the composition root for one-shot commands and for ``kairo-ingest run``.
See docs/operations.md.
"""
