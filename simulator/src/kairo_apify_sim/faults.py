"""Injected failures: which one strikes a request, and what it looks like on the wire."""

from __future__ import annotations

import dataclasses
import json
import random

from kairo_apify_sim import config as sim_config

# Endpoints with a side effect: their faults can strike after the effect happened.
SIDE_EFFECT_ENDPOINTS = frozenset({"start", "abort"})
# Returned to uvicorn instead of None: it then closes the connection without an answer
# (uvicorn logs it; server.py filters that one log line out).
DROP_SENTINEL = "kairo-simulator: dropped connection"
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The proxy received an invalid response.</p></body></html>"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """The fault (``None``: none) and the extra delay chosen for one request."""

    kind: str | None = None
    delay_seconds: float = 0.0

    def strikes_before(self, endpoint: str, cfg: sim_config.FaultConfig | None) -> bool:
        """True when the request must fail before the handler runs (no side effect)."""
        if self.kind is None:
            return False
        if self.kind == "error_429":
            return True
        return not (endpoint in SIDE_EFFECT_ENDPOINTS and cfg is not None and cfg.after_effect)


NO_FAULT = Fault()


def choose(cfg: sim_config.FaultConfig | None, rng: random.Random) -> Fault:
    """Draw this request's fault from the endpoint's probabilities."""
    if cfg is None:
        return NO_FAULT
    kind: str | None = None
    draw = rng.random()
    edge = 0.0
    for name in sim_config.FAULT_KINDS:
        edge += float(getattr(cfg, name))
        if draw < edge:
            kind = name
            break
    delay = cfg.slow_seconds if cfg.slow > 0 and rng.random() < cfg.slow else 0.0
    if kind is None and delay == 0.0:
        return NO_FAULT
    return Fault(kind, delay)


def error_reply(kind: str) -> tuple[int, bytes, str]:
    """``(status, body, content type)`` of an error fault; HTML where a proxy would answer."""
    if kind == "error_429":
        body = {
            "error": {
                "type": "rate-limit-exceeded",
                "message": "You have exceeded the rate limit. Please retry later.",
            }
        }
        return 429, json.dumps(body).encode(), "application/json; charset=utf-8"
    if kind == "error_500":
        body = {"error": {"type": "internal-server-error", "message": "Internal server error"}}
        return 500, json.dumps(body).encode(), "application/json; charset=utf-8"
    if kind == "non_json":
        return 200, HTML_PAGE, "text/html; charset=utf-8"
    status = 502 if kind == "error_502" else 503
    return status, HTML_PAGE.replace(b"502 Bad Gateway", b"%d" % status), "text/html"
