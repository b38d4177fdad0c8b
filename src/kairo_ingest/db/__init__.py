"""Database adapters: the engine and its error boundary, the embedded server, migrations,
the table definitions and the repositories. See docs/architecture.md (database errors).
"""
