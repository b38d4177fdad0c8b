"""Imported first by the benchmarks that share the tests' helpers (``support.roundtrips``,
``support.noop``): it puts ``tests/`` on ``sys.path``, as pytest does for the tests."""

from __future__ import annotations

import pathlib
import sys

TESTS = str(pathlib.Path(__file__).resolve().parents[1] / "tests")
if TESTS not in sys.path:
    sys.path.append(TESTS)
