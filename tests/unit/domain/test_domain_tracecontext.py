"""The W3C traceparent a job may carry: what is accepted, and how it is stored."""

from __future__ import annotations

import pytest

from kairo_ingest.domain import tracecontext

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_traceparent_is_stored_trimmed_and_in_lower_case() -> None:
    assert tracecontext.normalized(GOOD) == GOOD
    assert tracecontext.normalized(f"  {GOOD.upper()}\n") == GOOD
    assert tracecontext.normalized(tracecontext.EXAMPLE) == tracecontext.EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # an unknown version
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # the forbidden one
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # a short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  # not hex
        f"{GOOD}-extra",
    ],
)
def test_anything_else_is_refused(value: str) -> None:
    assert tracecontext.normalized(value) is None
