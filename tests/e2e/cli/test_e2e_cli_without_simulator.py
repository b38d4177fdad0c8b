"""The product without the Apify simulator installed (it is a package of its own): every
command that would use it exits 2 with one line saying how to install it, before it
opens anything."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_kit import env

# The interpreter as it is, but with the simulator package absent, as in an environment
# where only the product's wheel was installed.
WITHOUT_SIMULATOR = (
    "import sys; sys.modules['kairo_apify_sim'] = None; "
    "from kairo_ingest.cli import main; raise SystemExit(main.main(sys.argv[1:]))"
)


def _cli(*args: str, **values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SIMULATOR, *args],
        env=env(**values),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "values"),
    [
        (("simulator", "--port", "0"), {}),
        (("demo",), {"KAIRO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}),
        (
            ("run",),
            {
                "KAIRO_APIFY_SIMULATOR": "true",
                "KAIRO_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            },
        ),
    ],
    ids=["simulator", "demo", "run-with-the-simulator"],
)
def test_a_command_that_needs_the_simulator_says_how_to_install_it(
    args: tuple[str, ...], values: dict[str, str]
) -> None:
    done = _cli(*args, **values)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "kairo-ingest: error: the Apify simulator is not installed: install it with "
        "`pip install ./simulator` from the kairo-ingest repository (scripts/bootstrap does)"
    ]
    assert done.stdout == ""


def test_run_with_a_token_does_not_need_the_simulator() -> None:
    """Only the commands that use the simulator ask for it: ``run`` with a token gets past
    the check (and fails later, on the unreachable database, with exit 1)."""
    done = _cli(
        "run",
        KAIRO_APIFY_TOKEN="apify_api_" + "x" * 36,
        KAIRO_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
    )
    assert "simulator" not in done.stderr
    assert done.returncode == 1, done.stderr
