"""CI or not, read one way: the only place a test decides whether it may skip.

``.ci/run`` exports ``CI=true`` (hosted CI services set ``CI`` too). On a laptop a test
whose tool is missing (pgbouncer, Chromium...) skips and says why; under CI the same test
fails, so that a missing tool can never pass as a green run. ``tests/conftest.py`` adds a
backstop: under CI, a session with any skipped test fails.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

VARIABLE = "CI"
_TRUE = frozenset({"1", "true", "yes", "on"})


def in_ci() -> bool:
    """True when ``CI`` is set to a true value (``true``, ``1``, ``yes``, ``on``)."""
    return os.environ.get(VARIABLE, "").strip().lower() in _TRUE


def missing_tool(reason: str) -> NoReturn:
    """Skip because ``reason`` (a tool is missing) on a laptop; fail under CI."""
    if in_ci():
        pytest.fail(f"CI is set but {reason}: CI must run this test (.ci/run installs it)")
    pytest.skip(reason)
