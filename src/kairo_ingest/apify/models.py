"""Values the Apify adapter hands to the pipeline, and the parsers that build them.

Apify answers ``{"data": {...run...}}``; :func:`parse_run` turns the run object into a
frozen :class:`RunInfo`. A status we do not know is kept as the string Apify sent and
counts as "still running" (Apify adds statuses from time to time; a strict enum broke
the official client twice).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from kairo_ingest import errors
from kairo_ingest.domain import charges, statuses

KNOWN_STATUSES = frozenset(
    {"READY", "RUNNING", "SUCCEEDED", "FAILED", "TIMING-OUT", "TIMED-OUT", "ABORTING", "ABORTED"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """One Apify actor run, as far as the pipeline cares."""

    id: str
    act_id: str
    status: str
    status_message: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    default_dataset_id: str | None = None
    usage_total_usd: float | None = None
    """``usageTotalUsd``: what the run has cost so far (final once the run ended)."""
    usage: dict[str, Any] | None = None
    """``usage``: compute units, dataset writes... as Apify reports them."""
    memory_mbytes: int | None = None
    """``options.memoryMbytes``: the memory Apify gave the run; None when not reported."""
    max_total_charge_usd: float | None = None
    """``options.maxTotalChargeUsd``: the most the run may charge; None when not set."""
    charged_event_counts: dict[str, int] | None = None
    """``chargedEventCounts``: pay-per-event events charged so far, by name."""
    event_prices_usd: dict[str, float] | None = None
    """``pricingInfo.pricingPerEvent.actorChargeEvents.{event}.eventPriceUsd``, by name."""

    @property
    def terminal(self) -> bool:
        """SUCCEEDED, FAILED, TIMED-OUT or ABORTED. Unknown statuses are not terminal."""
        return statuses.is_terminal(self.status)

    @property
    def succeeded(self) -> bool:
        return self.status == statuses.RunStatus.SUCCEEDED

    @property
    def known_status(self) -> bool:
        return self.status in KNOWN_STATUSES

    @property
    def stopped_at_charge_cap(self) -> bool:
        """The run's next charge would not have fit under its max (domain/charges.py)."""
        return charges.stopped_at_charge_cap(
            max_total_charge_usd=self.max_total_charge_usd,
            usage_total_usd=self.usage_total_usd,
            charged_event_counts=self.charged_event_counts,
            event_prices_usd=self.event_prices_usd,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RunEnd:
    """What :meth:`ApifyClient.wait_or_abort` saw last: the run, and whether we aborted it.

    ``run`` is terminal unless the run was still going (ABORTING after our abort, say)
    when the final look gave up; None when not even the final look got an answer.
    """

    run: RunInfo | None
    deadline_passed: bool = False
    """Our deadline passed first, so we asked Apify to abort the run (forced)."""

    @property
    def ended(self) -> bool:
        return self.run is not None and self.run.terminal


def parse_datetime(value: object) -> dt.datetime | None:
    """Apify's ISO 8601 instants (``2026-01-07T19:52:32.145Z``) as aware datetimes; else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def format_datetime(value: dt.datetime) -> str:
    """The form Apify takes in query parameters: UTC with milliseconds and a ``Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def parse_run(data: object, *, operation: str) -> RunInfo:
    """Build a :class:`RunInfo` from Apify's run object (the value under ``data``).

    A run without an ``id`` or a ``status`` string is a malformed answer: it raises
    :class:`~kairo_ingest.errors.ApifyTransientError`, since a proxy or a truncated body
    is the likely cause and asking again usually helps.
    """
    if not isinstance(data, Mapping):
        raise errors.ApifyTransientError(f"{operation}: run object is not a JSON object")
    run_id = data.get("id")
    status = data.get("status")
    if not isinstance(run_id, str) or not run_id or not isinstance(status, str) or not status:
        raise errors.ApifyTransientError(f"{operation}: run object lacks an id or a status")
    act_id = data.get("actId")
    if not isinstance(act_id, str):
        act_id = _optional_str(data, "actorId") or ""
    return RunInfo(
        id=run_id,
        act_id=act_id,
        status=status,
        status_message=_optional_str(data, "statusMessage"),
        started_at=parse_datetime(data.get("startedAt")),
        finished_at=parse_datetime(data.get("finishedAt")),
        default_dataset_id=_optional_str(data, "defaultDatasetId"),
        usage_total_usd=_usd(data.get("usageTotalUsd")),
        usage=dict(data["usage"]) if isinstance(data.get("usage"), Mapping) else None,
        memory_mbytes=_memory(data.get("options")),
        max_total_charge_usd=_max_charge(data.get("options")),
        charged_event_counts=_event_counts(data.get("chargedEventCounts")),
        event_prices_usd=_event_prices(data.get("pricingInfo")),
    )


def _max_charge(options: object) -> float | None:
    """``options.maxTotalChargeUsd`` as a finite non-negative amount (a number or its text)."""
    value = options.get("maxTotalChargeUsd") if isinstance(options, Mapping) else None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return _usd(value)


def _event_counts(value: object) -> dict[str, int] | None:
    """``chargedEventCounts``: event name -> a non-negative whole count; others dropped."""
    if not isinstance(value, Mapping):
        return None
    return {
        str(name): count
        for name, count in value.items()
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0
    }


def _event_prices(pricing: object) -> dict[str, float] | None:
    """Event prices from a pay-per-event ``pricingInfo``; None for other pricing models."""
    if not isinstance(pricing, Mapping):
        return None
    per_event = pricing.get("pricingPerEvent")
    events = per_event.get("actorChargeEvents") if isinstance(per_event, Mapping) else None
    if not isinstance(events, Mapping):
        return None
    prices: dict[str, float] = {}
    for name, event in events.items():
        price = _usd(event.get("eventPriceUsd")) if isinstance(event, Mapping) else None
        if price is not None:
            prices[str(name)] = price
    return prices


def _memory(options: object) -> int | None:
    """``options.memoryMbytes`` when it is a positive integer; anything else is unknown."""
    value = options.get("memoryMbytes") if isinstance(options, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _usd(value: object) -> float | None:
    """A finite, non-negative amount; anything else (absent, a string, NaN) is unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    amount = float(value)
    return amount if math.isfinite(amount) and amount >= 0 else None


def unwrap_data(body: object, *, operation: str) -> object:
    """The value under ``data`` in Apify's envelope; a missing envelope is a malformed answer."""
    if not isinstance(body, Mapping) or "data" not in body:
        raise errors.ApifyTransientError(f"{operation}: answer has no 'data' envelope")
    return body["data"]


def parse_run_list(body: object, *, operation: str) -> list[RunInfo]:
    """``{"data": {"items": [...]}}`` from the list-runs endpoint."""
    data = unwrap_data(body, operation=operation)
    items = data.get("items") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise errors.ApifyTransientError(f"{operation}: run list has no 'items' array")
    return [parse_run(item, operation=operation) for item in items]


EXCERPT_CHARS = 200


@dataclasses.dataclass(frozen=True, slots=True)
class UnparsableItem:
    """A dataset item that could not be decoded on its own; the rest of its page was.

    ``reason`` is ``"undecodable"`` (not UTF-8), ``"too_deep"`` (JSON nested deeper than
    the decoder recurses) or ``"invalid_json"``. ``excerpt`` is at most
    ``EXCERPT_CHARS`` printable characters of its text: safe to store and to log. The
    pipeline stores it as a placeholder raw row with a skip reason.
    """

    reason: str
    excerpt: str
