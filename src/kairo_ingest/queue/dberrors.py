"""Re-export of :mod:`kairo_ingest.db.dberrors`, the one database error boundary.

The classification moved to ``db/``; this module stays only so that code importing
``queue.dberrors`` keeps working until every caller imports the ``db`` module directly.
"""

from __future__ import annotations

from kairo_ingest.db.dberrors import constraint_name, mapped, sqlstate, translate

__all__ = ["constraint_name", "mapped", "sqlstate", "translate"]
