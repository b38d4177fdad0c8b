"""Under CI a test may not skip: the one helper fails instead, and the session fails on any skip."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

from support import ci

TESTS = pathlib.Path(__file__).resolve().parents[2]


def _outcome_of_a_missing_tool() -> BaseException:
    """What ``missing_tool`` raised (pytest's skip and fail are BaseExceptions)."""
    try:
        ci.missing_tool("pgbouncer is missing")
    except BaseException as outcome:
        return outcome
    raise AssertionError("missing_tool returned")


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    outcome = _outcome_of_a_missing_tool()
    assert isinstance(outcome, pytest.fail.Exception), repr(outcome)
    assert "CI is set but pgbouncer is missing" in str(outcome)


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_missing_tool_skips_with_its_reason_elsewhere(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    outcome = _outcome_of_a_missing_tool()
    assert isinstance(outcome, pytest.skip.Exception), repr(outcome)
    assert "pgbouncer is missing" in str(outcome)


@pytest.mark.slow
def test_any_skip_fails_the_session_under_ci(tmp_path: pathlib.Path) -> None:
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    shutil.copytree(TESTS / "support", tmp_path / "support")
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n\n"
        "def test_fine():\n    assert True\n\n\n"
        "@pytest.mark.skip(reason='a reason')\ndef test_skipped():\n    assert False\n"
    )

    def session(ci_value: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "CI": ci_value},
            capture_output=True,
            text=True,
            timeout=120,
        )

    laptop, under_ci = session("false"), session("true")
    assert laptop.returncode == 0, laptop.stdout
    assert under_ci.returncode == 1, under_ci.stdout
    assert "skipped under CI: test_skips.py::test_skipped" in under_ci.stdout


NEED_TOOL = TESTS.parent / "scripts" / "need_tool"


def test_ci_stops_naming_a_tool_it_cannot_install(tmp_path: pathlib.Path) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "id").write_text("#!/bin/sh\necho 1000\n")  # not root: nothing is installed
    (stubs / "id").chmod(0o755)
    done = subprocess.run(
        ["/bin/bash", str(NEED_TOOL), "kairo-no-such-tool", "kairo-no-such-package", "a test"],
        env={"PATH": f"{stubs}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "CI needs kairo-no-such-tool (Debian package kairo-no-such-package) for a test" in (
        done.stderr
    )


def test_a_present_tool_passes() -> None:
    done = subprocess.run(
        ["/bin/bash", str(NEED_TOOL), "git", "git", "a test"], capture_output=True, timeout=60
    )
    assert done.returncode == 0
