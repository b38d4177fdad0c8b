"""The simulator's configuration, changeable at run time through ``POST /_sim/config``.

Durations are in simulated seconds and multiplied by ``time_factor`` (0.01 turns a
120 s run into 1.2 s). ``waitForFinish``, fault delays and the ABORTING phases
(``abort_grace_seconds``, ``forced_abort_seconds``) are real seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


class SimConfigError(ValueError):
    """A simulator setting is unknown or invalid. ``variable`` names it."""

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        self.message = message
        self.variable = variable
        super().__init__(message)


ENDPOINTS = (
    "start",
    "get_run",
    "abort",
    "list_runs",
    "input",
    "items",
    "log",
)
# How a run that reaches its ``maxTotalChargeUsd`` ends: the actor finishes by itself, or
# the platform aborts it (through ABORTING). Either way its dataset keeps what it pushed.
CHARGE_CAP_OUTCOMES = ("SUCCEEDED", "ABORTED")
FAULT_KINDS = ("error_500", "error_502", "error_503", "error_429", "drop", "truncate", "non_json")


@dataclasses.dataclass(slots=True)
class FaultConfig:
    """Probabilities (0..1, summing to at most 1) of each fault on one endpoint.

    ``drop`` closes the connection without an answer; ``truncate`` sends the headers and
    half the body, then closes; ``non_json`` answers 200 with an HTML page; ``slow``
    (independent of the others) delays the answer by ``slow_seconds``.
    ``after_effect``: on ``start`` and ``abort``, the fault strikes after the run was
    created or aborted (the request reached Apify, its answer was lost). A 429 always
    strikes before.
    """

    error_500: float = 0.0
    error_502: float = 0.0
    error_503: float = 0.0
    error_429: float = 0.0
    drop: float = 0.0
    truncate: float = 0.0
    non_json: float = 0.0
    slow: float = 0.0
    slow_seconds: float = 2.0  # real seconds
    after_effect: bool = True

    @classmethod
    def uniform(cls, total: float, **overrides: Any) -> FaultConfig:
        """``total`` spread evenly over every fault kind (plus overrides)."""
        share = total / len(FAULT_KINDS)
        values: dict[str, Any] = dict.fromkeys(FAULT_KINDS, share)
        values.update(overrides)
        return cls(**values)

    def total(self) -> float:
        return sum(float(getattr(self, kind)) for kind in FAULT_KINDS)


@dataclasses.dataclass(slots=True)
class SimConfig:
    """Everything the simulator can be told. Defaults: quiet, realistic shapes, no faults."""

    seed: int = 0
    expected_token: str | None = None  # None accepts any token, or none
    # More than one account: any of these tokens is accepted (empty: no such check).
    accepted_tokens: list[str] = dataclasses.field(default_factory=list)
    time_factor: float = 1.0
    ready_seconds: float = 1.0  # simulated seconds in READY before RUNNING
    duration_min_seconds: float = 5.0
    duration_max_seconds: float = 120.0
    outcome_weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"SUCCEEDED": 0.9, "FAILED": 0.05, "TIMED-OUT": 0.05}
    )
    default_item_count: int = 10  # items of a run whose input sets no limit
    error_item_share: float = 0.0
    missing_id_share: float = 0.0
    duplicate_share: float = 0.0
    empty_item_share: float = 0.0
    max_concurrent_runs: int | None = None  # None: no concurrent-runs-limit-exceeded
    max_total_memory_mbytes: int | None = None  # None: no actor-memory-limit-exceeded
    # The memory of a run started without ``memory``: the actor's own default, often
    # several GB for browser-based scrapers. ``actor_memory_mbytes`` sets it per actor,
    # keyed as the path names the actor (``owner~name`` or ``owner/name``).
    default_memory_mbytes: int = 4096
    actor_memory_mbytes: dict[str, int] = dataclasses.field(default_factory=dict)
    default_timeout_secs: int = 3600
    abort_grace_seconds: float = 0.2  # real seconds in ABORTING after a graceful abort
    # Real seconds in ABORTING after a forced abort (``gracefully=false``) and after the
    # platform aborts a run at its ``maxTotalChargeUsd``: short, but never skipped.
    forced_abort_seconds: float = 0.05
    # How a run stopped by its ``maxTotalChargeUsd`` ends, drawn per run from the seed:
    # weights of "SUCCEEDED" (the actor finishes early) and "ABORTED" (the platform aborts
    # it). The default keeps the actor finishing by itself.
    charge_cap_outcome_weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"SUCCEEDED": 1.0}
    )
    # The actor's ``pricingInfo.minimalMaxTotalChargeUsd``; a start whose
    # ``maxTotalChargeUsd`` is below it is refused (``max-total-charge-usd-below-minimum``).
    # None: the actor sets no minimum.
    minimal_max_total_charge_usd: float | None = None
    # The real platform's quirks, each off by default. Seconds here are real seconds.
    input_defaults: bool = False  # fill the actor's input-schema defaults into INPUT
    visibility_lag_seconds: float = 0.0  # a new run: 404 on get/abort/INPUT, absent from lists
    late_creation_seconds: float = 0.0  # a start whose answer is lost creates its run this late
    limit_error_statuses: list[int] = dataclasses.field(default_factory=lambda: [400])
    record_redirects: bool = False  # INPUT reads answer 302 to a signed storage URL
    storage_base_url: str | None = None  # where the signed URL points; None: the API's host
    timing_out_seconds: float = 0.0  # time in TIMING-OUT before TIMED-OUT
    faults: dict[str, FaultConfig] = dataclasses.field(default_factory=dict)

    def fault_for(self, endpoint: str) -> FaultConfig | None:
        """The endpoint's own fault settings, else those under ``"*"``, else none."""
        return self.faults.get(endpoint) or self.faults.get("*")

    def scaled(self, simulated_seconds: float) -> float:
        return simulated_seconds * self.time_factor

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "expected_token": self.expected_token is not None,
            "accepted_tokens": len(self.accepted_tokens),
        }

    def apply(self, patch: Mapping[str, Any]) -> None:
        """Merge a JSON patch: top-level fields replace, ``faults`` merge per endpoint.

        ``{"faults": {"start": null}}`` removes an endpoint's faults; ``{"faults": null}``
        removes all. Unknown fields raise :class:`SimConfigError`.
        """
        known = {field.name: field for field in dataclasses.fields(self)}
        for key, value in patch.items():
            if key not in known:
                raise SimConfigError(f"unknown simulator setting {key!r}", variable=key)
            if key == "faults":
                self._apply_faults(value)
            elif key == "actor_memory_mbytes":
                self.actor_memory_mbytes = _memory_by_actor(value)
            elif key == "outcome_weights":
                if not isinstance(value, Mapping):
                    raise SimConfigError("outcome_weights must be an object", variable=key)
                self.outcome_weights = {str(k): float(v) for k, v in value.items()}
            elif key == "charge_cap_outcome_weights":
                self.charge_cap_outcome_weights = _cap_outcomes(value)
            else:
                setattr(self, key, _coerce(key, value, getattr(self, key)))

    def _apply_faults(self, value: Any) -> None:
        if value is None:
            self.faults = {}
            return
        if not isinstance(value, Mapping):
            raise SimConfigError("faults must be an object", variable="faults")
        for endpoint, spec in value.items():
            if endpoint != "*" and endpoint not in ENDPOINTS:
                raise SimConfigError(f"unknown endpoint {endpoint!r}", variable="faults")
            if spec is None:
                self.faults.pop(endpoint, None)
                continue
            if isinstance(spec, FaultConfig):
                self.faults[endpoint] = spec
                continue
            if not isinstance(spec, Mapping):
                raise SimConfigError(f"faults.{endpoint} must be an object", variable="faults")
            current = dataclasses.replace(self.faults.get(endpoint) or FaultConfig())
            names = {field.name for field in dataclasses.fields(FaultConfig)}
            for name, raw in spec.items():
                if name not in names:
                    raise SimConfigError(f"unknown fault {name!r}", variable="faults")
                setattr(current, name, _coerce(name, raw, getattr(current, name)))
            self.faults[endpoint] = current


def _cap_outcomes(value: Any) -> dict[str, float]:
    """``{"SUCCEEDED": w, "ABORTED": w}``: how capped runs end; other keys are refused."""
    name = "charge_cap_outcome_weights"
    if not isinstance(value, Mapping):
        raise SimConfigError(f"{name} must be an object", variable=name)
    unknown = sorted(str(k) for k in value if k not in CHARGE_CAP_OUTCOMES)
    if unknown:
        raise SimConfigError(
            f"{name}: unknown outcome {unknown[0]!r} (known: SUCCEEDED, ABORTED)", variable=name
        )
    try:
        weights = {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise SimConfigError(f"bad value for {name!r}", variable=name) from exc
    if any(w < 0 for w in weights.values()):
        raise SimConfigError(f"{name}: weights must not be negative", variable=name)
    return weights


def _memory_by_actor(value: Any) -> dict[str, int]:
    """``{"owner~name": MB}``: each actor's default memory."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SimConfigError(
            "actor_memory_mbytes must be an object", variable="actor_memory_mbytes"
        )
    try:
        return {str(k): int(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise SimConfigError(
            "bad value for 'actor_memory_mbytes'", variable="actor_memory_mbytes"
        ) from exc


def _coerce(name: str, value: Any, current: Any) -> Any:
    """``value`` converted to the type of the field's current value (None allowed)."""
    if value is None:
        return None
    try:
        if isinstance(current, bool):
            return bool(value)
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if name == "accepted_tokens":
            return [str(v) for v in value]
        if isinstance(current, list):
            return [int(v) for v in value]
        if name in ("max_concurrent_runs", "max_total_memory_mbytes"):
            return int(value)
        if name == "minimal_max_total_charge_usd":
            return float(value)
        if name in ("expected_token", "storage_base_url"):
            return str(value)
    except (TypeError, ValueError) as exc:
        raise SimConfigError(f"bad value for {name!r}", variable=name) from exc
    return value
