"""Printing records: JSON with ``--json``, aligned ``key: value`` text otherwise."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any


def jsonable(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return jsonable(value.to_json())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value


def emit(record: Any, *, as_json: bool) -> None:
    data = jsonable(record)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        return
    if isinstance(data, Mapping):
        width = max((len(str(k)) for k in data), default=0)
        for key, value in data.items():
            text = json.dumps(value) if isinstance(value, dict | list) else value
            sys.stdout.write(f"{str(key).ljust(width)}  {'' if text is None else text}\n")
    else:
        sys.stdout.write(f"{data}\n")


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps([jsonable(r) for r in rows], indent=2) + "\n")
        return
    cells = [[_cell(jsonable(r).get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    sys.stdout.write(
        "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)) + "\n"
    )
    for row in cells:
        sys.stdout.write(
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n"
        )
    if not rows:
        sys.stdout.write("(none)\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def attempt_lines(attempt: Mapping[str, Any]) -> list[str]:
    """One attempt of ``jobs show`` as text: a header line, its error, one line per run."""
    ended = attempt.get("ended_at") or "(running)"
    after = attempt.get("job_status")
    header = (
        f"#{attempt['number']}  {attempt['outcome']}"
        + (f" -> job {after}" if after else "")
        + f"  by {attempt['owner']}  {attempt.get('started_at') or '?'} .. {ended}"
    )
    cost = attempt.get("cost_usd")
    if cost is not None:
        header += f"  ${cost:.4f}"
    lines = [header]
    if attempt.get("error"):
        lines.append(f"    {attempt.get('error_kind') or 'error'}: {attempt['error']}")
    for run in attempt.get("runs") or ():
        usd = run.get("usage_total_usd")
        lines.append(
            f"    run {run['id']}  {run['status']}  apify {run.get('apify_run_id') or '-'}"
            f"  {run['actor_id']}" + (f"  ${usd:.4f}" if usd is not None else "")
        )
    return lines
