"""Prometheus metrics: one registry for the process, served on ``/metrics``.

Metric objects live here so every layer names the same series; the adapters and the
worker import this module and update them.
"""

from __future__ import annotations

import prometheus_client as prom

REGISTRY = prom.CollectorRegistry(auto_describe=True)
prom.ProcessCollector(registry=REGISTRY)
prom.PlatformCollector(registry=REGISTRY)

JOBS_CLAIMED = prom.Counter(
    "kairo_jobs_claimed_total", "Jobs claimed by this process", ["kind"], registry=REGISTRY
)
JOBS_FINISHED = prom.Counter(
    "kairo_jobs_finished_total",
    "Job attempts finished, by outcome (succeeded, failed, retried, snoozed, released, cancelled)",
    ["kind", "outcome"],
    registry=REGISTRY,
)
LEASES_LOST = prom.Counter(
    "kairo_leases_lost_total",
    "Jobs whose lease this process lost (reclaimed, cancelled or expired)",
    ["kind"],
    registry=REGISTRY,
)
FENCED_WRITES = prom.Counter(
    "kairo_fenced_writes_rejected_total",
    "Writes refused because the lease token no longer matched",
    ["operation"],
    registry=REGISTRY,
)
JOB_DURATION = prom.Histogram(
    "kairo_job_duration_seconds",
    "Handler run time per attempt",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
    registry=REGISTRY,
)
JOBS_IN_FLIGHT = prom.Gauge(
    "kairo_jobs_in_flight", "Jobs running in this process", registry=REGISTRY
)
QUEUE_DEPTH = prom.Gauge(
    "kairo_queue_depth", "Jobs per status (sampled)", ["status"], registry=REGISTRY
)
OLDEST_READY_AGE = prom.Gauge(
    "kairo_oldest_ready_job_age_seconds",
    "Age of the oldest job that is ready to run (sampled)",
    registry=REGISTRY,
)
READY_JOBS = prom.Gauge(
    "kairo_queue_ready_jobs",
    "Jobs ready to be claimed now, per kind (sampled; what the autoscaler reads)",
    ["kind"],
    registry=REGISTRY,
)
RUNNING_JOBS = prom.Gauge(
    "kairo_queue_running_jobs",
    "Jobs running in any process, per kind (sampled)",
    ["kind"],
    registry=REGISTRY,
)
RAW_PARTITIONS_AHEAD = prom.Gauge(
    "kairo_raw_partitions_ahead_seconds",
    "How far past now the newest daily partition of raw items reaches (set by the process"
    " that ran the last round of their upkeep)",
    registry=REGISTRY,
)
RAW_PARTITIONS_DROPPED = prom.Counter(
    "kairo_raw_partitions_dropped_total",
    "Partitions of raw items this process dropped past KAIRO_RAW_RETENTION_DAYS",
    registry=REGISTRY,
)
REAPED = prom.Counter(
    "kairo_jobs_reaped_total",
    "Expired leases returned by the reaper",
    ["outcome"],
    registry=REGISTRY,
)
HANDED_BACK = prom.Counter(
    "kairo_jobs_handed_back_total",
    "Jobs this process had claimed but never started (the claim's answer was lost), "
    "handed back with the attempt refunded",
    registry=REGISTRY,
)
PROMOTED = prom.Counter(
    "kairo_jobs_promoted_total",
    "Deferred jobs (a backoff or snooze over) made ready by this process",
    registry=REGISTRY,
)
APIFY_REQUESTS = prom.Counter(
    "kairo_apify_requests_total",
    "Apify API requests by endpoint and result",
    ["endpoint", "result"],
    registry=REGISTRY,
)
APIFY_RUNS = prom.Counter(
    "kairo_apify_runs_total", "Apify runs by final status", ["status"], registry=REGISTRY
)
APIFY_SPENT_USD = prom.Counter(
    "kairo_apify_spent_usd_total",
    "USD Apify reported for finished runs (usageTotalUsd), by account and actor",
    ["account", "actor"],
    registry=REGISTRY,
)
APIFY_RUNS_ENDED = prom.Counter(
    "kairo_apify_runs_ended_total",
    "Apify run ends recorded, by account, how the run ended (complete, charge_cap, aborted, "
    "timed_out, failed) and who recorded it (job, adoption, final_look, ledger)",
    ["account", "ended", "ended_by"],
    registry=REGISTRY,
)
APIFY_RUNS_ENDED_WITHOUT_COST = prom.Counter(
    "kairo_apify_runs_ended_without_cost_total",
    "Apify run ends recorded without a usageTotalUsd (should stay 0)",
    ["account"],
    registry=REGISTRY,
)
LEDGER_RUNS_LOOKED_AT = prom.Counter(
    "kairo_ledger_runs_followed_total",
    "Runs the ledger service looked at on Apify because no job follows them, by account",
    ["account"],
    registry=REGISTRY,
)
LEDGER_RUNS_ABORTED = prom.Counter(
    "kairo_ledger_runs_aborted_total",
    "Runs the ledger service aborted because their job no longer wants them, by account",
    ["account"],
    registry=REGISTRY,
)
LEDGER_UNFOLLOWED = prom.Gauge(
    "kairo_ledger_unfollowed_runs",
    "Runs that have not ended and that no job follows (the ledger's), by account",
    ["account"],
    registry=REGISTRY,
)
APIFY_DAILY_CAP_USD = prom.Gauge(
    "kairo_apify_daily_cap_usd",
    "An account's daily spend cap, as of this process's last check of it before a start",
    ["account"],
    registry=REGISTRY,
)
APIFY_DAILY_SPENT_USD = prom.Gauge(
    "kairo_apify_daily_spent_usd",
    "An account's spend in the cap's current window (the UTC day), as of the same check",
    ["account"],
    registry=REGISTRY,
)
RUN_SLOT_WAITS = prom.Counter(
    "kairo_run_slot_waits_total",
    "Run starts that had to wait for a slot of the account's shared budget",
    ["account"],
    registry=REGISTRY,
)
ITEMS = prom.Counter(
    "kairo_items_total",
    "Dataset items processed (stored, created, updated, skipped)",
    ["platform", "result"],
    registry=REGISTRY,
)


def render() -> bytes:
    return bytes(prom.generate_latest(REGISTRY))


CONTENT_TYPE = prom.CONTENT_TYPE_LATEST
