"""The console's JSON API, described as an OpenAPI 3.1 document (``/api/openapi.json``).

Every route that answers HTML answers JSON to ``Accept: application/json`` with the same
data; this document says what that JSON is. A test requests every route and validates
each answer against it, so the two cannot drift apart. Schemas are JSON Schema 2020-12
(OpenAPI 3.1's own), closed (``additionalProperties: false``) wherever the shape is ours.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

from kairo_ingest import __version__
from kairo_ingest.domain import statuses

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
UUID: Schema = {"type": "string", "format": "uuid"}
TIME: Schema = {"type": "string", "format": "date-time"}
DAY: Schema = {"type": "string", "format": "date"}


def _null(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(props: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
        "additionalProperties": False,
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(schema: Schema) -> Schema:
    return {"type": "array", "items": schema}


JOB_STATUS: Schema = {"enum": [s.value for s in statuses.JobStatus]}
RUN_STATUS: Schema = {"enum": [s.value for s in statuses.RunStatus]}
PARTIAL_REASON: Schema = {"enum": ["aborted", "charge_cap", "timed_out"]}
CURSOR: Schema = _null({"type": "string", "description": "pass as ?after= for the next page"})

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": STRING}),
    "Document": {"type": "object", "required": ["openapi", "paths"]},
    "JobListRow": _obj(
        {
            "id": UUID,
            "kind": STRING,
            "brand_id": _null(UUID),
            "status": JOB_STATUS,
            "priority": INT,
            "attempts": INT,
            "max_attempts": INT,
            "available_at": TIME,
            "last_error": _null(STRING),
            "last_error_kind": _null(STRING),
            "created_at": TIME,
            "started_at": _null(TIME),
            "finished_at": _null(TIME),
        }
    ),
    "Job": _obj(
        {
            "id": UUID,
            "kind": STRING,
            "brand_id": _null(UUID),
            "status": JOB_STATUS,
            "priority": INT,
            "attempts": INT,
            "max_attempts": INT,
            "available_at": TIME,
            "lease_owner": _null(STRING),
            "lease_expires_at": _null(TIME),
            "params": {"type": "object"},
            "evidence_status": _null({"type": "object"}),
            "last_error": _null(STRING),
            "last_error_kind": _null(STRING),
            "started_at": _null(TIME),
            "finished_at": _null(TIME),
            "created_at": TIME,
            "updated_at": TIME,
            # The attempt history's counters (docs/queue.md): claims number the attempts;
            # interruptions and snoozes are refunded ends, each with its cap.
            "claims": INT,
            "attempt_started_at": _null(TIME),
            "interruptions": INT,
            "snoozes": INT,
            "deferred": {"type": "boolean"},
            "cancel_requested_at": _null(TIME),
            # The W3C traceparent its enqueue passed (docs/tracing.md).
            "traceparent": _null(STRING),
        }
    ),
    "Run": _obj(
        {
            "id": UUID,
            "job_id": _null(UUID),
            "brand_id": UUID,
            "status": RUN_STATUS,
            "apify_run_id": _null(STRING),
            "actor_id": STRING,
            "account": _null(STRING),
            "source_connection_id": _null(UUID),
            "attempt": INT,
            "raw_item_count": _null(INT),
            "normalized_item_count": _null(INT),
            "error_kind": _null(STRING),
            "error_summary": _null(STRING),
            "usage_total_usd": _null(NUMBER),
            "created_at": TIME,
            "started_at": _null(TIME),
            "finished_at": _null(TIME),
            "duration_seconds": _null(NUMBER),
            "platform": _null(STRING),
            "capability": _null(STRING),
            "identifier": _null(STRING),
        }
    ),
    "JobRun": _obj(
        {
            "id": UUID,
            "source_connection_id": _null(UUID),
            "status": RUN_STATUS,
            "apify_run_id": _null(STRING),
            "attempt": INT,
            "account": _null(STRING),
            "actor_id": STRING,
            "raw_item_count": _null(INT),
            "normalized_item_count": _null(INT),
            "error_kind": _null(STRING),
            "error_summary": _null(STRING),
            "usage_total_usd": _null(NUMBER),
            "created_at": TIME,
            "started_at": _null(TIME),
            "finished_at": _null(TIME),
            "duration_seconds": _null(NUMBER),
            "platform": _null(STRING),
            "capability": _null(STRING),
            "identifier": _null(STRING),
        }
    ),
    "Attempt": _obj(
        {
            "number": INT,
            "owner": STRING,
            "started_at": _null(TIME),
            "ended_at": _null(TIME),
            "outcome": {"enum": [*(o.value for o in statuses.AttemptOutcome), "unrecorded"]},
            "job_status": _null(JOB_STATUS),
            "error_kind": _null(STRING),
            "error": _null(STRING),
            "cost_usd": _null(NUMBER),
            "runs": _list(
                _obj(
                    {
                        "id": UUID,
                        "apify_run_id": _null(STRING),
                        "source_connection_id": UUID,
                        "actor_id": STRING,
                        "account": _null(STRING),
                        "status": RUN_STATUS,
                        "started_at": _null(TIME),
                        "finished_at": _null(TIME),
                        "usage_total_usd": _null(NUMBER),
                        "error_kind": _null(STRING),
                        "error_summary": _null(STRING),
                    }
                )
            ),
        }
    ),
    "EvidenceRow": _obj(
        {
            "outcome": {"enum": ["failed", "refreshed", "reused", "skipped"]},
            "entry": {"type": "object"},
            "source": _null(
                _obj({"id": UUID, "platform": STRING, "capability": STRING, "identifier": STRING})
            ),
        }
    ),
    "Depth": _obj(
        {
            "pending": INT,
            "ready": INT,
            "running": INT,
            "oldest_ready_age_seconds": _null(NUMBER),
        }
    ),
    "AccountSpendPanel": _obj(
        {
            "account": STRING,
            "runs": INT,
            "waiting": INT,
            "memory_mbytes": INT,
            "spent_today_usd": NUMBER,
            "max_concurrent_runs": INT,
            "max_memory_mbytes": INT,
            "daily_cap_usd": _null(NUMBER),
        }
    ),
    "Overview": _obj(
        {
            "depth": _ref("Depth"),
            "summary": _obj(
                {
                    "finished": _obj({"succeeded": INT, "failed": INT, "cancelled": INT}),
                    "jobs_estimate": INT,
                    "job_failures": _list(_obj({"kind": STRING, "n": INT})),
                    "run_failures": _list(_obj({"kind": STRING, "n": INT})),
                    "in_flight": _list(
                        _obj(
                            {
                                "id": UUID,
                                "brand_id": UUID,
                                "status": RUN_STATUS,
                                "apify_run_id": _null(STRING),
                                "actor_id": STRING,
                                "account": _null(STRING),
                                "created_at": TIME,
                                "age_seconds": NUMBER,
                                "platform": STRING,
                                "capability": STRING,
                                "identifier": STRING,
                            }
                        )
                    ),
                    "in_flight_count": INT,
                }
            ),
            "throughput": _list(
                _obj(
                    {
                        "i": INT,
                        "starts_at": TIME,
                        "created": INT,
                        "succeeded": INT,
                        "failed": INT,
                        "cancelled": INT,
                    }
                )
            ),
            "spend": _list(_ref("AccountSpendPanel")),
        }
    ),
    "JobsPage": _obj(
        {
            "jobs": _list(_ref("JobListRow")),
            "next": CURSOR,
            "filters": {"type": "object", "additionalProperties": STRING},
        }
    ),
    "JobPage": _obj(
        {
            "job": _ref("Job"),
            "runs": _list(_ref("JobRun")),
            "attempts": _list(_ref("Attempt")),
            "evidence": _list(_ref("EvidenceRow")),
            "cost_usd": _null(NUMBER),
            "problem": _null(STRING),
        }
    ),
    "RunsPage": _obj(
        {
            "runs": _list(_ref("Run")),
            "next": CURSOR,
            "filters": {"type": "object", "additionalProperties": STRING},
            "durations": _obj({"edges_seconds": _list(NUMBER), "counts": _list(INT)}),
        }
    ),
    "HeldJob": _obj(
        {
            "id": UUID,
            "kind": STRING,
            "brand_id": _null(UUID),
            "lease_owner": _null(STRING),
            "claims": INT,
            "attempts": INT,
            "max_attempts": INT,
            "attempt_started_at": _null(TIME),
            "lease_expires_at": _null(TIME),
            "cancel_requested_at": _null(TIME),
            "lease_left_seconds": _null(NUMBER),
        }
    ),
    "Worker": _obj(
        {
            "owner": STRING,
            "hostname": STRING,
            "pid": INT,
            "version": STRING,
            "concurrency": INT,
            "heartbeat_interval_seconds": NUMBER,
            "started_at": TIME,
            "last_beat_at": TIME,
            "stopped_at": _null(TIME),
            "seconds_since_beat": NUMBER,
            "held_jobs": INT,
            "alive": BOOL,
            "jobs": _list(_ref("HeldJob")),
        }
    ),
    "LongRun": _obj(
        {
            "id": UUID,
            "apify_run_id": _null(STRING),
            "job_id": _null(UUID),
            "brand_id": UUID,
            "account": STRING,
            "status": RUN_STATUS,
            "actor_id": STRING,
            "started_at": _null(TIME),
            "sent_at": _null(TIME),
            "intent_at": TIME,
            "released_at": _null(TIME),
            "abort_requested_at": _null(TIME),
            "age_seconds": NUMBER,
        }
    ),
    "LastAttemptJob": _obj(
        {
            "id": UUID,
            "kind": STRING,
            "brand_id": _null(UUID),
            "status": {"enum": ["pending", "running"]},
            "lease_owner": _null(STRING),
            "attempts": INT,
            "max_attempts": INT,
            "last_error_kind": _null(STRING),
            "last_error": _null(STRING),
            "available_at": TIME,
            "created_at": TIME,
        }
    ),
    "WorkersPage": _obj(
        {
            "workers": _list(_ref("Worker")),
            "unregistered": _list(_obj({"owner": STRING, "jobs": _list(_ref("HeldJob"))})),
            "stuck": _obj(
                {
                    "leases_near_expiry": _list(_ref("HeldJob")),
                    "long_runs": _list(_ref("LongRun")),
                    "last_attempt": _list(_ref("LastAttemptJob")),
                }
            ),
            "thresholds": _obj({"lease_within_seconds": NUMBER, "runs_over_seconds": NUMBER}),
        }
    ),
    "UnfollowedRun": _obj(
        {
            "run_id": UUID,
            "apify_run_id": _null(STRING),
            "account": STRING,
            "status": RUN_STATUS,
            "job_id": _null(UUID),
            "job_status": _null(JOB_STATUS),
            "unwanted": _null(STRING),
            "brand_id": UUID,
            "actor_id": STRING,
            "sent_at": _null(TIME),
            "started_at": _null(TIME),
            "released_at": _null(TIME),
            "abort_requested_at": _null(TIME),
            "next_check_at": _null(TIME),
        }
    ),
    "LedgerPage": _obj(
        {
            "since": DAY,
            "unfollowed": _list(_ref("UnfollowedRun")),
            "unfollowed_limit": INT,
            "live": _list(
                _obj(
                    {
                        "account": STRING,
                        "status": RUN_STATUS,
                        "followed_by": {"enum": ["job", "ledger"]},
                        "runs": INT,
                    }
                )
            ),
            "ended": _list(
                _obj(
                    {
                        "account": STRING,
                        "status": RUN_STATUS,
                        "partial_reason": _null(PARTIAL_REASON),
                        "ended_by": _null(STRING),
                        "runs": INT,
                        "without_cost": INT,
                        "usage_total_usd": NUMBER,
                    }
                )
            ),
            "partial_spend": _list(
                _obj(
                    {
                        "account": STRING,
                        "partial_reason": PARTIAL_REASON,
                        "runs": INT,
                        "usd": NUMBER,
                    }
                )
            ),
        }
    ),
    "BrandSource": _obj(
        {
            "id": UUID,
            "brand_id": UUID,
            "platform": STRING,
            "capability": STRING,
            "identifier": STRING,
            "enabled": BOOL,
            "account": _null(STRING),
            "run_id": _null(UUID),
            "run_status": _null(RUN_STATUS),
            "apify_run_id": _null(STRING),
            "run_created_at": _null(TIME),
            "run_finished_at": _null(TIME),
            "raw_item_count": _null(INT),
            "normalized_item_count": _null(INT),
            "error_kind": _null(STRING),
            "error_summary": _null(STRING),
            "usage_total_usd": _null(NUMBER),
            "succeeded_at": _null(TIME),
            "succeeded_age_seconds": _null(NUMBER),
            "capability_on": BOOL,
            "capability_reason": _null(STRING),
            "fresh": BOOL,
        }
    ),
    "BrandsPage": _obj(
        {
            "brands": _list(_obj({"brand_id": UUID, "sources": _list(_ref("BrandSource"))})),
            "next": _null(UUID),
            "handle": _null(STRING),
            "freshness_ttl_seconds": NUMBER,
        }
    ),
    "SpendRow": _obj(
        {
            "day": DAY,
            "account": STRING,
            "brand_id": UUID,
            "actor_id": STRING,
            "runs": INT,
            "usage_total_usd": NUMBER,
        },
        optional=("day", "account", "brand_id", "actor_id"),
    ),
    "SpendPage": _obj(
        {
            "computed_at": TIME,
            "today": DAY,
            "since": DAY,
            "day": _null(DAY),
            "days": _list(_ref("SpendRow")),
            "daily_caps_usd": {"type": "object", "additionalProperties": _null(NUMBER)},
            "total_usd": NUMBER,
            "accounts": _list(_ref("SpendRow")),
            "brands": _list(_ref("SpendRow")),
            "actors": _list(_ref("SpendRow")),
        }
    ),
    "AuditEntry": _obj(
        {
            "id": UUID,
            "created_at": TIME,
            "finished_at": _null(TIME),
            "actor": STRING,
            "via": {"enum": ["session", "bearer"]},
            "client": _null(STRING),
            "action": STRING,
            "target": STRING,
            "selection": {"type": "object"},
            "matched": INT,
            "changed": INT,
            "unchanged": INT,
            "estimate_usd": _null(NUMBER),
            "state": {"enum": ["running", "done", "failed"]},
            "error": _null(STRING),
        }
    ),
    "AuditPage": _obj({"entries": _list(_ref("AuditEntry")), "next": CURSOR}),
    "AuditEntryPage": _obj({"entry": _ref("AuditEntry")}),
    "Preview": _obj(
        {
            "action": {"enum": ["retry", "cancel"]},
            "action_id": UUID,
            "selection": {"type": "object"},
            "matched": INT,
            "capped": BOOL,
            "max_jobs": INT,
            "estimate": _null(
                _obj(
                    {
                        "usd": NUMBER,
                        "brands": INT,
                        "source_runs": INT,
                        "sources_without_history": INT,
                    }
                )
            ),
        }
    ),
    "Outcome": _obj(
        {
            "action_id": UUID,
            "matched": INT,
            "changed": INT,
            "unchanged": INT,
            "problems": _list(STRING),
            "replayed": BOOL,
        }
    ),
    "RunAbortPreview": _obj(
        {
            "action": {"enum": ["abort"]},
            "action_id": UUID,
            "selection": {"type": "object"},
            "matched": INT,
            "capped": BOOL,
            "max_runs": INT,
        }
    ),
    "RunAbortRequest": {
        "type": "object",
        "properties": {
            "scope": {"enum": ["selected", "matching"]},
            "id": _list(UUID),
            "filter": {"type": "object", "additionalProperties": STRING},
            "snapshot": TIME,
            "action_id": UUID,
        },
        "required": ["scope"],
    },
    "BulkRequest": {
        "type": "object",
        "properties": {
            "action": {"enum": ["retry", "cancel"]},
            "scope": {"enum": ["selected", "matching"]},
            "id": _list(UUID),
            "filter": {"type": "object", "additionalProperties": STRING},
            "snapshot": TIME,
            "action_id": UUID,
            "estimate_usd": NUMBER,
        },
        "required": ["action", "scope"],
    },
}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _json(_ref("Error"), "a bad parameter, named"),
    "401": _json(_ref("Error"), "no credential, or a wrong one"),
    "429": _json(_ref("Error"), "too many wrong tokens from this client: wait Retry-After"),
    "503": _json(_ref("Error"), "the database is unavailable, or the query took too long"),
}


def _params(*names: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "query", "required": False, "schema": STRING, "description": text}
        for name, text in names
    ]


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": UUID}


ANY_OBJECT: Schema = {"type": "object"}
EXTRA = {
    "404": ("not found", "Error"),
    "409": ("the queue refused: the job page, with the reason in `problem`", "JobPage"),
}


def _op(
    method: str,
    summary: str,
    schema: str,
    *,
    params: Sequence[dict[str, Any]] = (),
    extra: tuple[str, ...] = (),
    body: Schema | None = None,
) -> dict[str, Any]:
    """One operation: its 200 answer, the errors every route may give, and ``extra`` ones."""
    responses = {"200": _json(_ref(schema), summary), **ERRORS}
    if method == "post":
        responses["403"] = _json(_ref("Error"), "a JSON POST with a cookie: use the bearer token")
    for code in extra:
        description, answer = EXTRA[code]
        responses[code] = _json(_ref(answer), description)
    operation: dict[str, Any] = {"summary": summary, "parameters": list(params)}
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    operation["responses"] = responses
    return {method: operation}


JOB_FILTERS = _params(
    ("status", "pending, running, succeeded, failed or cancelled"),
    ("kind", "the job kind"),
    ("error_kind", "the last error's kind"),
    ("q", "words in the last error (each a prefix)"),
    ("brand", "a brand id"),
    ("handle", "words of a source's handle or URL: the brands that have it"),
    ("since", "created at or after (ISO date or time, UTC)"),
    ("until", "created before"),
    ("after", "the page cursor (next)"),
)
RUN_FILTERS = _params(
    ("status", "the run's status"),
    ("platform", "instagram, tiktok, youtube, linkedin or web"),
    ("actor", "the actor id"),
    ("account", "the Apify account"),
    ("source", "a source id"),
    ("after", "the page cursor (next)"),
)

PATHS: dict[str, Any] = {
    "/": _op("get", "Overview: queue depth, 24 h, throughput, runs in flight, spend", "Overview"),
    "/jobs": _op("get", "Jobs, newest first, filtered", "JobsPage", params=JOB_FILTERS),
    "/jobs/{job_id}": _op(
        "get",
        "One job, its evidence status, every attempt, its runs and their cost",
        "JobPage",
        params=[_path_id("job_id")],
        extra=("404",),
    ),
    "/jobs/{job_id}/retry": _op(
        "post",
        "Retry one failed or cancelled job (audited)",
        "Outcome",
        params=[_path_id("job_id")],
        extra=("404", "409"),
        body=ANY_OBJECT,
    ),
    "/jobs/{job_id}/cancel": _op(
        "post",
        "Cancel one pending or running job (audited)",
        "Outcome",
        params=[_path_id("job_id")],
        extra=("404", "409"),
        body=ANY_OBJECT,
    ),
    "/jobs/bulk": _op(
        "post",
        "Preview a bulk action: how many jobs, the spend estimate, and the action's id",
        "Preview",
        body=_ref("BulkRequest"),
    ),
    "/jobs/bulk/apply": _op(
        "post",
        "Apply a previewed bulk action once (the same action_id again changes nothing)",
        "Outcome",
        body=_ref("BulkRequest"),
    ),
    "/runs": _op("get", "Apify runs, newest first, filtered", "RunsPage", params=RUN_FILTERS),
    "/runs/abort": _op(
        "post",
        "Preview an abort of runs (selected, or every run matching a runs filter): how many "
        "have not ended and were not asked already, and the action's id",
        "RunAbortPreview",
        body=_ref("RunAbortRequest"),
    ),
    "/runs/abort/apply": _op(
        "post",
        "Mark the previewed runs for the run ledger to abort, once per action_id (audited)",
        "Outcome",
        body=_ref("RunAbortRequest"),
    ),
    "/workers": _op(
        "get",
        "Worker replicas with the jobs each holds; stuck work: leases near expiry, long "
        "Apify runs, jobs on their last attempt",
        "WorkersPage",
        params=_params(
            ("lease_within", "leases ending within this many seconds (default 30)"),
            ("runs_over", "runs going on longer than this many seconds (default 3600)"),
        ),
    ),
    "/ledger": _op(
        "get",
        "The run ledger: runs no job follows, runs not ended by account, status and "
        "follower, runs ended since a UTC day with their cost by why they ended",
        "LedgerPage",
        params=_params(("since", "runs ended from this UTC day on (YYYY-MM-DD, default today)")),
    ),
    "/brands": _op(
        "get",
        "Brands and their sources, by id; ?handle= finds brands by handle",
        "BrandsPage",
        params=_params(("handle", "words of a source's handle or URL"), ("after", "page cursor")),
    ),
    "/spend": _op(
        "get",
        "Spend per UTC day and account (30 days), daily caps, and per account, brand, actor",
        "SpendPage",
        params=_params(("day", "narrow the breakdowns to one UTC day (YYYY-MM-DD)")),
    ),
    "/audit": _op(
        "get", "Console actions, newest first", "AuditPage", params=_params(("after", "cursor"))
    ),
    "/audit/{entry_id}": _op(
        "get",
        "One console action",
        "AuditEntryPage",
        params=[_path_id("entry_id")],
        extra=("404",),
    ),
    "/api/openapi.json": _op("get", "This document (OpenAPI 3.1)", "Document"),
}


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kairo-ingest console",
            "version": __version__,
            "description": (
                "Every console page as JSON: send Accept: application/json and "
                "Authorization: Bearer <KAIRO_CONSOLE_TOKEN>. POSTs need the bearer token "
                "(a session cookie is for HTML forms, with their CSRF token)."
            ),
        },
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def document() -> dict[str, Any]:
    return copy.deepcopy(_document())
