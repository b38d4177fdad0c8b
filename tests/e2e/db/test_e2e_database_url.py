"""The CLI with libpq URL parameters and awkward passwords."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from sqlalchemy.engine import make_url


def _stats(url: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIRO_")}
    env.update({"KAIRO_DATABASE_URL": url, "KAIRO_DATA_DIR": str(cwd)})
    return subprocess.run(
        [sys.executable, "-m", "kairo_ingest", "stats"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sslmode_connect_timeout_and_application_name_are_accepted(
    db_url: str, tmp_path: pathlib.Path
) -> None:
    url = (
        make_url(db_url)
        .update_query_dict(
            {"sslmode": "prefer", "connect_timeout": "5", "application_name": "kairo-cli"}
        )
        .render_as_string(hide_password=False)
    )
    done = _stats(url, tmp_path)
    assert done.returncode == 0, done.stderr


def test_an_unknown_parameter_exits_2_naming_the_variable(tmp_path: pathlib.Path) -> None:
    done = _stats("postgresql://postgres@127.0.0.1:5432/postgres?keepalives=1", tmp_path)
    assert done.returncode == 2
    assert "KAIRO_DATABASE_URL" in done.stderr
    assert "keepalives" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "password",
    [
        "Sup3r%40secret%3Awith%2Fslash",  # '@', ':' and '/' percent-encoded
        "Sup3r@secret:with",  # unencoded '@' and ':'
        "Sup3r@secret:with/slash",  # unencoded '/' as well: refused as not a URL
    ],
)
def test_the_password_never_appears_in_the_error_line(
    password: str, tmp_path: pathlib.Path
) -> None:
    done = _stats(f"postgresql://kairo:{password}@127.0.0.1:9/kairo", tmp_path)
    assert done.returncode in (1, 2), done.stderr
    output = done.stdout + done.stderr
    for fragment in ("Sup3r", "secret", "with", "slash"):
        assert fragment not in output, output
