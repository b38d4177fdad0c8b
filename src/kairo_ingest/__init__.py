"""kairo-ingest: an asyncio worker that turns Apify actor runs into brand evidence."""

from __future__ import annotations

__version__ = "0.3.0"
