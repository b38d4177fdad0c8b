"""``enqueue --traceparent``: checked before anything is opened (exit 2, one line)."""

from __future__ import annotations

import uuid

import pytest

from kairo_ingest.cli import main

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_enqueue_takes_a_traceparent() -> None:
    args = main.build_parser().parse_args(
        ["enqueue", "--brand", str(uuid.uuid4()), "--traceparent", GOOD.upper()]
    )
    assert args.traceparent == GOOD
    plain = main.build_parser().parse_args(["enqueue", "--brand", str(uuid.uuid4())])
    assert plain.traceparent is None


def test_a_bad_traceparent_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main.build_parser().parse_args(
            ["enqueue", "--brand", str(uuid.uuid4()), "--traceparent", "00-zz-01"]
        )
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "not a W3C traceparent" in err
    assert len(err.strip().splitlines()) == 1
