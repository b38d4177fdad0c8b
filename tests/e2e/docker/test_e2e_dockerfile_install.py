"""No Docker engine runs here, so this performs the Dockerfile's own steps in a clean venv:
build the wheels, install only from them, lay out /app as the image does, then run the
installed service and the image's HEALTHCHECK command against it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from support import outcomes

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def _healthcheck_command() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])", text)
    assert match, "the Dockerfile has an exec-form HEALTHCHECK"
    command: list[str] = json.loads(match.group(1))
    assert command[0] == "python", "the healthcheck uses Python, not curl"
    return command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dockerfile_install_steps_produce_a_working_service(tmp_path: Path, db_url: str) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "kairo_ingest"]' in dockerfile
    assert 'CMD ["run"]' in dockerfile
    assert re.search(r"^USER \d+", dockerfile, re.M), "runs as a non-root user"

    # The default target (the last stage) is the product alone; `demo` adds the simulator.
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", dockerfile, re.M)
    assert stages[-1] == ("runtime", "product")
    assert ("runtime", "demo") in stages
    runtime = dockerfile.split(" AS runtime\n", 1)[1].split("\nFROM ", 1)[0]
    demo = dockerfile.split(" AS demo\n", 1)[1].split("\nFROM ", 1)[0]
    assert "kairo_ingest-*.whl" in runtime
    assert "kairo_apify_sim" not in runtime
    assert "kairo_apify_sim-*.whl" in demo
    assert re.search(r"^USER 10001", demo, re.M)

    # Stage 1: build the wheels from a copy of exactly what the Dockerfile copies.
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(ROOT / "src", src / "src", ignore=skip)
    shutil.copytree(ROOT / "simulator", src / "simulator", ignore=skip)
    assert "COPY simulator ./simulator" in dockerfile
    wheels = tmp_path / "wheels"
    _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels, ".", "./simulator",
        cwd=src,
    )  # fmt: skip

    # The product's wheel is the product alone: the simulator is a wheel of its own, and
    # the test tooling (round-trip counting, the noop kind) lives in tests/support.
    ours = outcomes.only(wheels.glob("kairo_ingest-*.whl"))
    simulator = outcomes.only(wheels.glob("kairo_apify_sim-*.whl"))
    product = zipfile.ZipFile(ours).namelist()
    assert "kairo_ingest/cli/main.py" in product
    tooling = [n for n in product if re.search(r"simulator|kairo_apify_sim|roundtrips|builtin", n)]
    assert tooling == []
    assert "kairo_apify_sim/server.py" in zipfile.ZipFile(simulator).namelist()

    # Stage 2 (the default target): a clean venv that installs only the product's wheel.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheels, ours)
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(ROOT / "alembic.ini", app)
    shutil.copytree(
        ROOT / "migrations", app / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )

    port = _free_port()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KAIRO_DATABASE_URL": db_url,
        "KAIRO_HTTP_HOST": "127.0.0.1",
        "KAIRO_HTTP_PORT": str(port),
        "KAIRO_LOG_FORMAT": "json",
        "KAIRO_APIFY_SIMULATOR": "true",
        "KAIRO_MIGRATIONS_DIR": str(app / "migrations"),
    }
    assert "schema at" in _run(python, "-m", "kairo_ingest", "migrate", cwd=app, env=env)

    # The product image has no simulator: asking for it is a one-line usage error.
    refused = subprocess.run(
        [str(python), "-m", "kairo_ingest", "run", "--drain"],
        cwd=app,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "simulator is not installed" in outcomes.only(refused.stderr.strip().splitlines())

    # The demo target adds the simulator's wheel, from the same wheel directory.
    _run(python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", wheels, simulator)

    service = subprocess.Popen(
        [str(python), "-m", "kairo_ingest", "run"],
        cwd=app,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert service.poll() is None, service.communicate()[1][-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the installed service never became ready"
            time.sleep(0.1)
        command = _healthcheck_command()
        check = subprocess.run(
            [str(venv / "bin" / command[0]), *command[1:]],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert check.returncode == 0, check.stderr
    finally:
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=20)
    assert service.returncode == 0, stderr[-2000:]

    # And the healthcheck fails when nothing answers.
    dead = subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert dead.returncode != 0
