"""``kairo-ingest enqueue --traceparent``: stored with the job, printed with it; a value
that is not a W3C traceparent is a usage error (exit 2, one line) and writes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cli_kit import cli, cli_json, env

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def environ(db_url: str, tmp_path: Path) -> dict[str, str]:
    return env(KAIRO_DATABASE_URL=db_url, KAIRO_DATA_DIR=str(tmp_path / "data"))


def test_enqueue_stores_the_traceparent_it_is_given(environ: dict[str, str]) -> None:
    brand = str(uuid.uuid4())
    job = cli_json("enqueue", "--brand", brand, "--traceparent", TRACEPARENT, environ=environ)
    assert job["traceparent"] == TRACEPARENT
    assert cli_json("jobs", "show", job["id"], environ=environ)["traceparent"] == TRACEPARENT

    refused = cli("enqueue", "--brand", str(uuid.uuid4()), "--traceparent", "nope", environ=environ)
    assert refused.returncode == 2
    assert "not a W3C traceparent" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert len(cli_json("jobs", "list", environ=environ)) == 1, "the refused enqueue wrote a job"
