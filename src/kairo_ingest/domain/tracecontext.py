"""The W3C ``traceparent`` a job may carry from its enqueue to its span (pure).

``00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>``, lower case; an all-zero
trace id or span id is invalid, and version ``ff`` is forbidden (W3C Trace Context,
section 3.2). Only version ``00`` is accepted: it is the one the specification defines
and the one OpenTelemetry writes.
"""

from __future__ import annotations

import re

_FORMAT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def normalized(value: str) -> str | None:
    """The traceparent as it is stored (trimmed, lower case), or None when it is not one."""
    candidate = value.strip().lower()
    found = _FORMAT.fullmatch(candidate)
    if found is None:
        return None
    trace_id, span_id = found.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return candidate
