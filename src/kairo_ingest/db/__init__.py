"""Database adapters: the engine, the embedded server, migrations and the table definitions."""
