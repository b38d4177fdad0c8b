"""Why a run's dataset is partial: the charge cap, an abort, a timeout. Pure rules.

Apify stops a pay-per-event run at its ``maxTotalChargeUsd`` in one of two ways: the actor
finishes itself when ``Actor.charge()`` reports the limit (the run ends SUCCEEDED), or the
platform aborts it (ABORTED). Either way the results pushed before the stop are in the
dataset and are paid for. We tell a capped run from the numbers on the final run object,
never from its ``statusMessage`` (free text that actors and Apify word as they like):

* ``charged``: the larger of ``usageTotalUsd`` and the sum of ``chargedEventCounts[e] x
  eventPriceUsd[e]`` over the events ``pricingInfo`` prices (an account that also pays
  the platform usage of a pay-per-event run has that counted against the max too);
* ``step``: the price of the dearest event the run charged (of any priced event when it
  charged none), or 0 without prices;
* the run stopped at its cap when ``charged + step`` passes the max (the next charge of
  that event would not have fit), or, without prices, when ``charged`` reached the max;
  both within ``TOLERANCE_USD`` (the run object's dollar figures are rounded, and a
  platform may add a few micro-dollars of its own per item).

A run that finished on its own within one event's price of its max is called capped too:
its dataset is kept either way, only its label says "partial".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from kairo_ingest.domain import statuses

TOLERANCE_USD = 1e-5  # ten micro-dollars: rounding, and a platform's own per-item fees


class PartialReason(enum.StrEnum):
    CHARGE_CAP = "charge_cap"
    ABORTED = "aborted"
    TIMED_OUT = "timed_out"


def charged_usd(
    usage_total_usd: float | None,
    charged_event_counts: Mapping[str, int] | None,
    event_prices_usd: Mapping[str, float] | None,
) -> float | None:
    """What counts against the run's max: the larger of its ``usageTotalUsd`` and its priced
    events (None: unknown)."""
    counts = charged_event_counts or {}
    prices = event_prices_usd or {}
    priced = [name for name in counts if name in prices]
    events = sum(counts[name] * prices[name] for name in priced) if priced else None
    known = [value for value in (usage_total_usd, events) if value is not None]
    return max(known) if known else None


def stopped_at_charge_cap(
    *,
    max_total_charge_usd: float | None,
    usage_total_usd: float | None,
    charged_event_counts: Mapping[str, int] | None = None,
    event_prices_usd: Mapping[str, float] | None = None,
) -> bool:
    """True when the run's next charge would not have fit under its ``maxTotalChargeUsd``."""
    if max_total_charge_usd is None or max_total_charge_usd <= 0:
        return False
    charged = charged_usd(usage_total_usd, charged_event_counts, event_prices_usd)
    if charged is None:
        return False
    prices = event_prices_usd or {}
    counts = charged_event_counts or {}
    used = [prices[name] for name, count in counts.items() if count > 0 and name in prices]
    candidates = used or list(prices.values())
    step = max(candidates) if candidates else 0.0
    return charged + step > max_total_charge_usd - TOLERANCE_USD


def partial_reason(
    status: str,
    *,
    capped: bool,
    aborted_for: PartialReason | None = None,
) -> PartialReason | None:
    """Why the dataset of a run that ended with ``status`` is partial; None when it is not.

    ``capped`` (:func:`stopped_at_charge_cap`) wins: a capped run, SUCCEEDED or ABORTED, is
    not worth starting again with the same input. Apify's TIMED-OUT is ``timed_out``. An
    ABORTED run is ``aborted_for`` (``timed_out`` when we aborted it at our deadline), else
    ``aborted``. FAILED, and SUCCEEDED under the cap, are not partial (FAILED is restarted).
    """
    if status in (statuses.RunStatus.SUCCEEDED, statuses.RunStatus.ABORTED) and capped:
        return PartialReason.CHARGE_CAP
    if status == statuses.RunStatus.TIMED_OUT:
        return PartialReason.TIMED_OUT
    if status == statuses.RunStatus.ABORTED:
        return aborted_for or PartialReason.ABORTED
    return None
