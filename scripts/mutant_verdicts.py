"""A pytest plugin for scripts/run_mutants.py: how each test ended, and why.

Loaded with ``-p mutant_verdicts`` when ``KAIRO_MUTANT_VERDICTS`` names a file; it appends
one JSON object a line to that file:

* ``{"event": "start", "nodeid": ...}`` when a test starts (so a hung run names its test);
* ``{"event": "report", "nodeid", "when", "outcome", "assertion", "exception", "message",
  "where"}`` for each phase (setup, call, teardown) of each test;
* ``{"event": "collect-error", "nodeid", "message"}`` when a module cannot be collected.

``assertion`` is what the runner counts as a kill, decided here where the exception object
is at hand: the test's *call* phase failed with

* an :class:`AssertionError` or a subclass (a plain or pytest-rewritten ``assert``, a
  ``pytest.raises(match=...)`` mismatch, a mock's ``assert_called...``), or
* pytest's ``Failed`` raised by ``pytest.raises``/``pytest.warns`` when nothing was raised
  or warned (``DID NOT RAISE``, ``DID NOT WARN``), or
* an exception group whose every leaf is one of the above (an assertion inside a task).

Anything else is not a kill: an error in a fixture (the setup or teardown phase), an
exception the code under test raised (``TypeError``, ``ImportError``...), an explicit
``pytest.fail()``, a skip, or a collection error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any, TextIO

import pytest

VARIABLE = "KAIRO_MUTANT_VERDICTS"
_NOTHING_RAISED = ("DID NOT RAISE", "DID NOT WARN")
_MESSAGE_CHARS = 240

_out: TextIO | None = None


def is_assertion(exc: BaseException) -> bool:
    """True when ``exc`` is a test's verdict (see the module docstring), not an accident."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_assertion(leaf) for leaf in exc.exceptions)
    if isinstance(exc, AssertionError):
        return True
    failed: type[BaseException] = pytest.fail.Exception
    return isinstance(exc, failed) and str(exc).startswith(_NOTHING_RAISED)


def _write(record: dict[str, Any]) -> None:
    if _out is not None:
        _out.write(json.dumps(record) + "\n")
        _out.flush()


def _one_line(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= _MESSAGE_CHARS else line[: _MESSAGE_CHARS - 3] + "..."


def pytest_configure(config: pytest.Config) -> None:
    global _out
    path = os.environ.get(VARIABLE)
    if path:
        _out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed at unconfigure


def pytest_unconfigure(config: pytest.Config) -> None:
    global _out
    if _out is not None:
        _out.close()
        _out = None


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    _write({"event": "start", "nodeid": nodeid})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    record: dict[str, Any] = {
        "event": "report",
        "nodeid": report.nodeid,
        "when": report.when,
        "outcome": report.outcome,
        "assertion": False,
    }
    if report.failed and call.excinfo is not None:
        exc = call.excinfo.value
        record["assertion"] = report.when == "call" and is_assertion(exc)
        record["exception"] = type(exc).__qualname__
        record["message"] = _one_line(call.excinfo.exconly())
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            record["where"] = f"{os.path.relpath(crash.path, item.config.rootpath)}:{crash.lineno}"
    _write(record)
    return report


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _write(
            {
                "event": "collect-error",
                "nodeid": report.nodeid,
                "message": _one_line(str(report.longrepr)),
            }
        )
