"""``python -m kairo_ingest`` is the same program as the ``kairo-ingest`` script."""

from __future__ import annotations

from kairo_ingest.cli import main

if __name__ == "__main__":
    raise SystemExit(main.main())
