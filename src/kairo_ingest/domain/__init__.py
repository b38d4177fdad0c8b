"""The pure domain: statuses, identifiers, the actor registry, normalizers and retry rules.

Nothing in this package performs I/O or imports an I/O library. See docs/architecture.md.
"""
