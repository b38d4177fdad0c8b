"""Argument types for the CLI: every value is checked here, before anything is opened.

A value that PostgreSQL, the JSON codec or the OS would refuse later (a number beyond
the column's range, NaN in JSON, a NUL or lone surrogate in text, JSON nested deeper
than the parser's recursion limit, a port past 65535) is a usage error with one line
and exit 2, never a traceback or an SQL error after a half-done write.
"""

from __future__ import annotations

import argparse
import json
import math
import uuid
from typing import Any, NoReturn

from kairo_ingest import config
from kairo_ingest.domain import tracecontext

# PostgreSQL's ``integer``: the type of jobs.priority and jobs.max_attempts.
PG_INT_MIN = -(2**31)
PG_INT_MAX = 2**31 - 1
MAX_CONCURRENCY = config.MAX_CONCURRENCY  # run --concurrency: KAIRO_CONCURRENCY's bound
MAX_ATTEMPTS = 100
MAX_LIST_LIMIT = 100_000
# 100 years: beyond it a duration is a typo, and dt.timedelta overflows near 2.7 million.
MAX_DAYS = 36_500.0
# --settings: a source's actor settings are small, flat-ish objects.
MAX_JSON_DEPTH = 32
MAX_JSON_BYTES = 64 * 1024


class Parser(argparse.ArgumentParser):
    """``argparse`` with one-line errors: ``kairo-ingest sources add: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def uuid_arg(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {_show(value)}") from None


def traceparent(value: str) -> str:
    """A W3C ``traceparent`` (``enqueue --traceparent``): the job's span continues its trace."""
    parsed = tracecontext.normalized(value)
    if parsed is None:
        raise argparse.ArgumentTypeError(
            f"not a W3C traceparent (such as {tracecontext.EXAMPLE}): {_show(value)}"
        )
    return parsed


def text(value: str) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogate (undecodable argv bytes)."""
    problem = _text_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def int_range(low: int, high: int) -> Any:
    """An integer in ``[low, high]``; the message states the range."""

    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {_show(value)}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"{_show(value)} is out of range: must be from {low} to {high}"
            )
        return number

    return parse


def days(value: str) -> float:
    """A finite number of days from 0 to :data:`MAX_DAYS` (fractions allowed)."""
    try:
        number = float(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {_show(value)}") from None
    if not math.isfinite(number) or not 0 <= number <= MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"{_show(value)} is not a number of days from 0 to {MAX_DAYS:g}"
        )
    return number


def json_object(value: str) -> dict[str, Any]:
    """A JSON object that jsonb can store, at most :data:`MAX_JSON_DEPTH` deep."""
    if len(value.encode("utf-8", "surrogatepass")) > MAX_JSON_BYTES:
        raise argparse.ArgumentTypeError(f"longer than {MAX_JSON_BYTES} bytes")
    # Checked on the text first: json.loads recurses, and 60,000 brackets overflow it.
    if _bracket_depth(value) > MAX_JSON_DEPTH:
        raise argparse.ArgumentTypeError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        parsed = json.loads(value, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # _no_constant, huge integers
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    problem = _json_problem(parsed)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return parsed


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError(f"{literal[:20]} is out of range for a JSON number")
    return number


def _bracket_depth(value: str) -> int:
    """The deepest ``[``/``{`` nesting outside strings (an upper bound for bad JSON)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in value:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _json_problem(node: Any) -> str | None:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                return f"a string in it {problem.removeprefix('text ')}"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "text contains a NUL character (\\u0000), which PostgreSQL cannot store"
    if any("\ud800" <= char <= "\udfff" for char in value):
        return "text contains a lone surrogate or bytes that are not UTF-8"
    return None


def _show(value: str, limit: int = 40) -> str:
    """A value for an error line: short, and printable whatever it holds."""
    shown = value if len(value) <= limit else value[:limit] + "..."
    return ascii(shown)
