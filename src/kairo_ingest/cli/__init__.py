"""The command line: the composition root for one-shot commands and for ``run``.
See docs/operations.md.
"""
