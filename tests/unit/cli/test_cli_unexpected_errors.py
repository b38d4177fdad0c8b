"""An unexpected error is one line; KAIRO_LOG_LEVEL=DEBUG (env or .env) adds a traceback."""

from __future__ import annotations

import pathlib

import pytest

from kairo_ingest import logs, redaction
from kairo_ingest.cli import commands
from kairo_ingest.cli import main as cli_main

SECRET = "apify_api_unexpected_0123456789abcdef"


@pytest.fixture
def crashing_dispatch(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    async def crash(*_: object) -> int:
        raise RuntimeError(f"boom near {SECRET}")

    monkeypatch.setattr(commands, "dispatch", crash)
    # main() configures logging onto the captured stderr; keep the process's own.
    monkeypatch.setattr(logs, "configure", lambda **_: None)
    monkeypatch.chdir(tmp_path)
    for name in ("KAIRO_LOG_LEVEL", "KAIRO_APIFY_TOKEN", "KAIRO_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    redaction.register_secret(SECRET)
    return tmp_path


def test_an_unexpected_error_is_one_line_without_a_traceback(
    crashing_dispatch: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main.main(["stats"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert SECRET not in err


def test_debug_from_the_env_file_adds_a_redacted_traceback(
    crashing_dispatch: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (crashing_dispatch / ".env").write_text("KAIRO_LOG_LEVEL=DEBUG\n")
    assert cli_main.main(["stats"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert "RuntimeError" in err
    assert SECRET not in err
