"""The real CLI as a subprocess: the contract's commands, exit codes, probes and signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cli_kit import cli, cli_json, env, free_port, get, wait_for

BRAND = "2b8f3c1e-5a4d-4e6f-9a7b-1c2d3e4f5a6b"


@pytest.fixture
def environ(db_url: str, tmp_path: Path) -> dict[str, str]:
    return env(KAIRO_DATABASE_URL=db_url, KAIRO_DATA_DIR=str(tmp_path / "data"))


def test_migrate_sources_enqueue_and_jobs_show(environ: dict[str, str]) -> None:
    migrated = cli("migrate", environ=environ)
    assert migrated.returncode == 0, migrated.stderr
    assert "head" in migrated.stdout

    source = cli_json(
        "sources",
        "add",
        "--brand",
        BRAND,
        "--platform",
        "instagram",
        "--capability",
        "posts",
        "--identifier",
        " https://www.Instagram.com/Acme/ ",
        environ=environ,
    )
    assert source["identifier"] == "acme"
    again = cli_json(
        "sources",
        "add",
        "--brand",
        BRAND,
        "--platform",
        "instagram",
        "--capability",
        "posts",
        "--identifier",
        "@acme",
        environ=environ,
    )
    assert again["id"] == source["id"], "adding the same source returns the existing one"

    job = cli_json("enqueue", "--brand", BRAND, "--priority", "5", environ=environ)
    assert (job["status"], job["kind"], job["priority"]) == ("pending", "compile", 5)
    assert cli_json("enqueue", "--brand", BRAND, environ=environ)["id"] == job["id"]

    shown = cli_json("jobs", "show", job["id"], environ=environ)
    assert shown["id"] == job["id"]
    assert "evidence_status" in shown
    listed = cli_json("sources", "list", "--brand", BRAND, environ=environ)
    assert [s["id"] for s in listed] == [source["id"]]
    stats = cli_json("stats", environ=environ)
    assert stats["counts"]["pending"] == 1


def test_unknown_pair_exits_2_listing_the_valid_pairs(environ: dict[str, str]) -> None:
    done = cli(
        "sources",
        "add",
        "--brand",
        BRAND,
        "--platform",
        "instagram",
        "--capability",
        "stories",
        "--identifier",
        "acme",
        environ=environ,
    )
    assert done.returncode == 2
    assert "instagram.posts" in done.stderr
    assert "web.crawl_pages" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_setting_exits_2_naming_the_variable(environ: dict[str, str]) -> None:
    done = cli("stats", environ={**environ, "KAIRO_LEASE_SECONDS": "abc"})
    assert done.returncode == 2
    assert "KAIRO_LEASE_SECONDS" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = cli(
        "stats",
        environ=env(KAIRO_DATABASE_URL=f"postgresql://postgres:secretpw@127.0.0.1:{port}/x"),
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "cannot reach PostgreSQL" in done.stderr
    assert "secretpw" not in done.stderr
    assert "Traceback" not in done.stderr


def test_run_refuses_a_schema_that_is_not_at_head(pg_server_url: str) -> None:
    # The server's maintenance database has no kairo schema.
    done = cli(
        "run",
        environ=env(
            KAIRO_DATABASE_URL=pg_server_url, KAIRO_HTTP_PORT="0", KAIRO_APIFY_SIMULATOR="true"
        ),
    )
    assert done.returncode == 1
    assert "kairo-ingest migrate" in done.stderr


def test_help_describes_every_command() -> None:
    done = cli("--help", environ=env())
    assert done.returncode == 0
    for command in ("run", "migrate", "sources", "enqueue", "jobs", "stats", "demo", "simulator"):
        assert command in done.stdout
    for args in (["run"], ["sources", "add"], ["jobs", "retry"], ["enqueue"]):
        assert cli(*args, "--help", environ=env()).returncode == 0
    # Every option of run, sources add, jobs retry and enqueue states its range or unit and default.
    expected = {
        ("run",): ["1 to 10000", "default: KAIRO_CONCURRENCY", "KAIRO_APIFY_SIMULATOR"],
        ("enqueue",): ["-2147483648 to", "1 to 100", "(default: 0)", "(default: 10)"],
        ("jobs", "list"): ["1 to 100000", "(default: 50)"],
        ("jobs", "prune"): ["0 to 36500", "KAIRO_FINISHED_JOB_RETENTION_DAYS", "kept"],
        ("sources", "add"): ["64 KiB", "32 levels"],
        ("simulator",): ["0 to 65535", "(default: 8765)"],
    }
    for args, phrases in expected.items():
        done = cli(*args, "--help", environ=env())
        text = " ".join(done.stdout.split())
        for phrase in phrases:
            assert phrase in text, (args, phrase)


def test_run_without_a_token_exits_2_naming_the_variable(
    environ: dict[str, str], tmp_path: Path
) -> None:
    """A secret that was not mounted must not turn into a silent fake Apify."""
    before = cli_json("stats", environ=environ)
    done = cli("run", "--drain", environ={**environ, "KAIRO_HTTP_PORT": "0"}, timeout=30)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "KAIRO_APIFY_TOKEN" in done.stderr
    assert "KAIRO_APIFY_SIMULATOR" in done.stderr
    assert cli_json("stats", environ=environ) == before
    # With no database configured either, nothing is created on disk.
    bare = cli("run", environ=env(KAIRO_DATA_DIR=str(tmp_path / "none")), timeout=30)
    assert bare.returncode == 2, bare.stderr
    assert not (tmp_path / "none").exists()


def test_run_on_a_port_in_use_exits_2_with_one_line(environ: dict[str, str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = cli(
            "run",
            environ={
                **environ,
                "KAIRO_APIFY_SIMULATOR": "true",
                "KAIRO_HTTP_PORT": str(port),
                "KAIRO_LOG_LEVEL": "ERROR",  # no start-up log lines: only the error
            },
        )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "KAIRO_HTTP_PORT" in lines[0]
    assert "in use" in lines[0]


def _start_run(environ: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kairo_ingest", "run"],
        env={**environ, "KAIRO_HTTP_PORT": str(port), "KAIRO_SHUTDOWN_GRACE_SECONDS": "5"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str], within: float) -> tuple[int, float, str]:
    """SIGTERM; the exit code, how long the exit took, and stderr."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=within + 10)
    took = time.monotonic() - started
    _, stderr = proc.communicate()
    return code, took, stderr


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def test_run_answers_probes_and_stops_on_sigterm(environ: dict[str, str]) -> None:
    port = free_port()
    token = "apify_api_probe0123456789abcdef"
    # Nothing is enqueued, so the worker never calls this (unreachable) Apify.
    apify = {"KAIRO_APIFY_TOKEN": token, "KAIRO_APIFY_BASE_URL": "http://127.0.0.9:9/"}
    proc = _start_run({**environ, **apify}, port)
    try:
        body = wait_for(f"http://127.0.0.1:{port}/readyz", 200, proc=proc, within=30)
        assert json.loads(body) == {"status": "ok", "reason": "ok", "apify": "127.0.0.9"}
        assert token not in body
        assert get(f"http://127.0.0.1:{port}/livez")[0] == 200
        code, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert "kairo_jobs_claimed_total" in metrics
        assert "process_resident_memory_bytes" in metrics
        exit_code, took, stderr = _stop(proc, within=1)
    finally:
        _kill(proc)
    assert exit_code == 0, stderr
    assert took < 5
    assert "service_stopped" in stderr


def test_run_with_no_configuration_uses_the_embedded_database(tmp_path: Path) -> None:
    port = free_port()
    environ = env(KAIRO_DATA_DIR=str(tmp_path / "kairo-data"), KAIRO_APIFY_SIMULATOR="true")
    proc = _start_run(environ, port)
    try:
        body = wait_for(f"http://127.0.0.1:{port}/readyz", 200, proc=proc, within=90)
        assert json.loads(body)["apify"] == "simulator"
        exit_code, took, stderr = _stop(proc, within=1)
    finally:
        _kill(proc)
    assert exit_code == 0, stderr
    assert took < 10
    assert (tmp_path / "kairo-data" / "pgdata" / "PG_VERSION").is_file()
    # The embedded server was stopped on exit: its postmaster.pid is gone.
    assert not (tmp_path / "kairo-data" / "pgdata" / "postmaster.pid").exists()


def test_jobs_retry_and_cancel(environ: dict[str, str]) -> None:
    job = cli_json("enqueue", "--brand", str(uuid.uuid4()), environ=environ)
    cancelled = cli_json("jobs", "cancel", job["id"], environ=environ)
    assert cancelled["status"] == "cancelled"
    retried = cli_json("jobs", "retry", job["id"], environ=environ)
    assert retried["status"] == "pending"
    missing = cli("jobs", "show", str(uuid.uuid4()), environ=environ)
    assert missing.returncode == 2
