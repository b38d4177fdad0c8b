"""The console's pages and actions: read through the read-only pool, act through the
write path, and return what to show.

A handler returns a :class:`Page` (a template, the data a JSON client gets, and values
only the HTML needs, such as charts), a :class:`Redirect` (after an HTML form POST) or a
:class:`Problem`. ``console.app`` turns them into HTML or JSON, so every route answers
both, with the same data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

from kairo_ingest import errors, logs
from kairo_ingest.console import (
    access,
    actions,
    charts,
    filters,
    queries,
    run_actions,
    security,
    spend,
)
from kairo_ingest.db import ledger_queries
from kairo_ingest.domain import registry, statuses
from kairo_ingest.queue import history, upkeep
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)

OVERVIEW_REFRESH_SECONDS = 5
WINDOW_SECONDS = 24 * 3600
THROUGHPUT_BUCKETS = 24
THROUGHPUT_BUCKET_SECONDS = 15 * 60
EVIDENCE_BUCKETS = ("failed", "refreshed", "reused", "skipped")
EVIDENCE_FIELDS = (
    "platform",
    "capability",
    "reason",
    "apify_run_id",
    "apify_status",
    "raw_items",
    "normalized_created",
    "normalized_updated",
    "items_skipped",
    "error_kind",
    "error",
    "retryable",
)
# The workers page's thresholds: a lease that ends within this many seconds, a run that
# has gone on longer than this (both overridable per request, within the bounds).
LEASE_WITHIN_SECONDS = 30.0
RUNS_OVER_SECONDS = 3600.0
MAX_THRESHOLD_SECONDS = 30 * 86400.0
# The ledger page: runs no job follows (oldest first), runs ended since a UTC day (today
# by default, as `kairo-ingest ledger`), at most this many days back.
UNFOLLOWED_LIMIT = 200
LEDGER_MAX_DAYS = 31
ACCOUNT_COLOURS = ("#2f6fb5", "#3b8f5a", "#d38b1c", "#8e44ad", "#c0392b", "#16a085")


@dataclasses.dataclass
class Page:
    template: str
    data: dict[str, Any]
    tab: str = ""
    status: int = 200
    html: dict[str, Any] = dataclasses.field(default_factory=dict)
    always_json: bool = False  # the OpenAPI document: JSON whatever the Accept header


@dataclasses.dataclass
class Redirect:
    location: str
    data: dict[str, Any]


@dataclasses.dataclass
class Problem:
    status: int
    message: str
    tab: str = ""


Result = Page | Redirect | Problem


@dataclasses.dataclass(frozen=True)
class Request:
    """What a handler needs of a request, already authenticated."""

    query: Mapping[str, str]
    form: Mapping[str, Any]
    principal: security.Principal
    client: str | None
    path_id: str | None = None


class Pages:
    def __init__(
        self,
        reads: access.ReadPool,
        writes: access.WritePath,
        *,
        freshness_ttl: dt.timedelta,
        disabled_capabilities: Collection[str],
        features: Collection[str] = frozenset(),
        default_limits: spend.DefaultLimits | None = None,
        cache: access.Cache | None = None,
    ) -> None:
        self.reads = reads
        self.writes = writes
        self.default_limits = default_limits or spend.DefaultLimits(32, 32_768, None)
        self.freshness_ttl = freshness_ttl
        self.disabled = disabled_capabilities
        self.features = features
        self.cache = cache or access.Cache()
        self.spend_cache = access.Cache(ttl_seconds=spend.PAGE_CACHE_SECONDS, serve_stale=True)

    # --- overview ---------------------------------------------------------------------

    async def overview(self, req: Request) -> Result:
        # The heavy part (windows over a million rows) is cached for a few seconds: twenty
        # refreshing tabs cost one computation per CACHE_SECONDS.
        data = await self.cache.get("overview", self._overview)
        depth = data["depth"]
        return Page(
            "overview.html",
            data,
            tab="overview",
            html={
                "refresh_seconds": OVERVIEW_REFRESH_SECONDS,
                "chart": throughput_chart(data["throughput"], depth["pending"] + depth["running"]),
            },
        )

    async def _overview(self) -> dict[str, Any]:
        async with self.reads.read() as conn:
            depth = await queue_jobs.depth(conn)
            summary = await queries.overview(conn, window_seconds=WINDOW_SECONDS)
            buckets = await queries.throughput(
                conn, buckets=THROUGHPUT_BUCKETS, bucket_seconds=THROUGHPUT_BUCKET_SECONDS
            )
            panel = await spend.panel(conn, self.default_limits)
        return {"depth": depth, "summary": summary, "throughput": buckets, "spend": panel}

    # --- jobs -------------------------------------------------------------------------

    async def jobs(self, req: Request) -> Result:
        params = filters.job_params(req.query)
        try:
            after = filters.cursor(req.query)
            async with self.reads.read() as conn:
                job_filter = await filters.job_filter(conn, params)
                rows, following = await queries.jobs_page(conn, job_filter, after=after)
        except errors.UsageError as exc:
            return Problem(400, exc.message, "jobs")
        return Page(
            "jobs.html",
            {
                "jobs": rows,
                "next": following.encode() if following else None,
                "filters": params,
            },
            tab="jobs",
            html={
                "job_statuses": [s.value for s in statuses.JobStatus],
                "job_kinds": [k.value for k in statuses.JobKind],
                "actions": actions.ACTIONS,
            },
        )

    async def job(self, req: Request) -> Result:
        try:
            job_id = filters.as_uuid(req.path_id or "", "job id")
        except errors.UsageError as exc:
            return Problem(400, exc.message, "jobs")
        notice = _NOTICES.get(req.query.get("done") or "")
        return await self._job_page(job_id, notice=notice)

    async def _job_page(
        self,
        job_id: uuid.UUID,
        *,
        notice: str | None = None,
        problem: str | None = None,
        status: int = 200,
    ) -> Result:
        async with self.reads.read() as conn:
            job = await queue_jobs.get(conn, job_id)
            if job is None:
                return Problem(404, "No such job.", "jobs")
            runs = await queries.job_runs(conn, job_id)
            attempts = await history.attempts(conn, job)
            evidence = await self._evidence_rows(conn, job.evidence_status)
        costed = [r["usage_total_usd"] for r in runs if r["usage_total_usd"] is not None]
        return Page(
            "job.html",
            {
                # The CLI's `jobs show --json` form, less the fencing token.
                "job": {k: v for k, v in job.to_json().items() if k != "lease_token"},
                "runs": runs,
                # Every attempt (as `jobs show`): replica, times, outcome, error, runs, cost.
                "attempts": [attempt.to_json() for attempt in attempts],
                "evidence": evidence,
                "cost_usd": float(sum(costed)) if costed else None,
                "problem": problem,
            },
            tab="jobs",
            status=status,
            html={
                "notice": notice,
                "can_retry": job.status in ("failed", "cancelled"),
                "can_cancel": job.status in ("pending", "running"),
            },
        )

    async def _evidence_rows(
        self, conn: queries.Conn, status: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        entries = [
            (bucket, entry)
            for bucket in EVIDENCE_BUCKETS
            for entry in (status or {}).get(bucket, [])
            if isinstance(entry, dict)
        ]
        ids = []
        for _bucket, entry in entries:
            try:
                ids.append(uuid.UUID(str(entry.get("source_id"))))
            except ValueError:
                continue
        sources = await queries.sources_by_id(conn, ids)
        rows = []
        for bucket, entry in entries:
            try:
                source = sources.get(uuid.UUID(str(entry.get("source_id"))))
            except ValueError:
                source = None
            shown = dict.fromkeys(EVIDENCE_FIELDS) | entry  # absent fields show as "-"
            rows.append({"outcome": bucket, "entry": shown, "source": source})
        return rows

    async def act(self, req: Request, action_name: str) -> Result:
        """Retry or cancel one job, through the queue's own functions, audited."""
        try:
            job_id = filters.as_uuid(req.path_id or "", "job id")
        except errors.UsageError as exc:
            return Problem(400, exc.message, "jobs")
        action = actions.action_named(action_name)
        async with self.writes.turn() as engine:
            outcome = await actions.apply(
                engine,
                action,
                actions.Selection(ids=(job_id,)),
                action_id=uuid.uuid4(),
                principal=req.principal,
                client=req.client,
                direct=True,
            )
        if outcome.changed:
            done = "retried" if action.name == "retry" else "cancelled"
            return Redirect(f"/jobs/{job_id}?done={done}", _outcome_json(outcome))
        if outcome.problems:
            return await self._job_page(job_id, problem=outcome.problems[0], status=409)
        return Problem(404, "No such job.", "jobs")

    # --- bulk actions -----------------------------------------------------------------

    async def bulk_preview(self, req: Request) -> Result:
        try:
            action = actions.action_named(str(req.form.get("action") or ""))
            selection = _selection(req.form, noun="job", params=filters.job_params)
            async with self.reads.read() as conn:
                preview = await actions.preview(conn, action, selection)
        except errors.UsageError as exc:
            return Problem(400, exc.message, "jobs")
        data = preview.to_json()
        return Page(
            "confirm.html",
            data,
            tab="jobs",
            html={"verb": action.verb, **_scope_html(selection)},
        )

    async def bulk_apply(self, req: Request) -> Result:
        try:
            action = actions.action_named(str(req.form.get("action") or ""))
            selection = _selection(req.form, noun="job", params=filters.job_params, applying=True)
            action_id = filters.as_uuid(str(req.form.get("action_id") or ""), "action_id")
            raw_estimate = req.form.get("estimate_usd")
            estimate_usd = float(raw_estimate) if raw_estimate not in (None, "") else None
        except (errors.UsageError, ValueError) as exc:
            message = exc.message if isinstance(exc, errors.UsageError) else "bad estimate_usd"
            return Problem(400, message, "jobs")
        async with self.writes.turn() as engine:
            outcome = await actions.apply(
                engine,
                action,
                selection,
                action_id=action_id,
                principal=req.principal,
                client=req.client,
                estimate_usd=estimate_usd,
            )
        return Redirect(f"/audit/{action_id}", _outcome_json(outcome))

    # --- aborting runs ------------------------------------------------------------------

    async def runs_abort_preview(self, req: Request) -> Result:
        try:
            selection = _selection(req.form, noun="run", params=_run_params)
            async with self.reads.read() as conn:
                preview = await run_actions.preview(conn, selection)
        except errors.UsageError as exc:
            return Problem(400, exc.message, "runs")
        return Page(
            "run_confirm.html",
            preview.to_json(),
            tab="runs",
            html=_scope_html(selection),
        )

    async def runs_abort_apply(self, req: Request) -> Result:
        try:
            selection = _selection(req.form, noun="run", params=_run_params, applying=True)
            action_id = filters.as_uuid(str(req.form.get("action_id") or ""), "action_id")
        except errors.UsageError as exc:
            return Problem(400, exc.message, "runs")
        async with self.writes.turn() as engine:
            outcome = await run_actions.apply(
                engine,
                selection,
                action_id=action_id,
                principal=req.principal,
                client=req.client,
            )
        return Redirect(f"/audit/{action_id}", _outcome_json(outcome))

    # --- replicas and stuck work -------------------------------------------------------

    async def workers(self, req: Request) -> Result:
        try:
            lease_within = _seconds(req.query, "lease_within", LEASE_WITHIN_SECONDS)
            runs_over = _seconds(req.query, "runs_over", RUNS_OVER_SECONDS)
        except errors.UsageError as exc:
            return Problem(400, exc.message, "workers")
        async with self.reads.read() as conn:
            registry_rows = await upkeep.workers(conn)
            held = await queries.held_jobs(conn)
            stuck = await queries.stuck_work(
                conn, lease_within_seconds=lease_within, runs_over_seconds=runs_over
            )
        by_owner: dict[str, list[dict[str, Any]]] = {}
        for job in held:
            by_owner.setdefault(job["lease_owner"] or "", []).append(job)
        workers = []
        for worker in registry_rows:
            row = dataclasses.asdict(worker)
            row["alive"] = worker.alive
            row["jobs"] = by_owner.pop(worker.owner, [])
            workers.append(row)
        # Jobs whose holder the registry does not know (it was forgotten, or a release
        # before the registry): they are held all the same.
        unregistered = [{"owner": owner, "jobs": jobs} for owner, jobs in sorted(by_owner.items())]
        return Page(
            "workers.html",
            {
                "workers": workers,
                "unregistered": unregistered,
                "stuck": stuck,
                "thresholds": {
                    "lease_within_seconds": lease_within,
                    "runs_over_seconds": runs_over,
                },
            },
            tab="workers",
            html={
                "live": [w for w in workers if w["alive"]],
                "stopped": [w for w in workers if not w["alive"]],
            },
        )

    # --- the run ledger ----------------------------------------------------------------

    async def ledger_page(self, req: Request) -> Result:
        """What ``kairo-ingest ledger`` shows, through its own queries (``db/ledger_queries.py``):
        the runs no job follows, the runs that have not ended by account, status and
        follower, and the runs ended since a day with their cost, by why they ended."""
        today = dt.datetime.now(dt.UTC).date()
        raw = (req.query.get("since") or "").strip()
        try:
            since = dt.date.fromisoformat(raw) if raw else today
        except ValueError:
            return Problem(400, f"since is not a date (YYYY-MM-DD): {raw[:40]!r}", "ledger")
        if not today - dt.timedelta(days=LEDGER_MAX_DAYS) <= since <= today:
            return Problem(400, f"since must be within the last {LEDGER_MAX_DAYS} days", "ledger")
        async with self.reads.read() as conn:
            unfollowed = await ledger_queries.unfollowed(conn, limit=UNFOLLOWED_LIMIT)
            live = await ledger_queries.live_by_state(conn)
            ended = await ledger_queries.ended_by_state(
                conn, since=dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
            )
        partial: dict[str, dict[str, Any]] = {}
        for row in ended:
            reason = row["partial_reason"]
            if reason is None:
                continue
            entry = partial.setdefault(
                f"{row['account']}/{reason}",
                {"account": row["account"], "partial_reason": reason, "runs": 0, "usd": 0.0},
            )
            entry["runs"] += row["runs"]
            entry["usd"] = round(entry["usd"] + row["usage_total_usd"], 6)
        return Page(
            "ledger.html",
            {
                "since": since.isoformat(),
                "unfollowed": unfollowed,
                "unfollowed_limit": UNFOLLOWED_LIMIT,
                "live": live,
                "ended": ended,
                "partial_spend": sorted(
                    partial.values(), key=lambda e: (e["account"], e["partial_reason"])
                ),
            },
            tab="ledger",
        )

    # --- runs, brands, spend, audit -----------------------------------------------------

    async def runs(self, req: Request) -> Result:
        params = filters.run_params(req.query)
        try:
            run_filter = filters.run_filter(params)
            after = filters.cursor(req.query)
        except errors.UsageError as exc:
            return Problem(400, exc.message, "runs")
        async with self.reads.read() as conn:
            rows, following = await queries.runs_page(conn, run_filter, after=after)
        durations = await self.cache.get("durations", self._durations)
        return Page(
            "runs.html",
            {
                "runs": rows,
                "next": following.encode() if following else None,
                "filters": params,
                "durations": {
                    "edges_seconds": list(queries.DURATION_EDGES_SECONDS),
                    "counts": durations,
                },
            },
            tab="runs",
            html={
                "run_statuses": [s.value for s in statuses.RunStatus],
                "platforms": [p.value for p in statuses.Platform],
                "chart": durations_chart(durations),
                "selectable": True,
                "ended_statuses": sorted(statuses.RUN_ENDED),
            },
        )

    async def _durations(self) -> list[int]:
        async with self.reads.read() as conn:
            return await queries.run_durations(conn, window_seconds=WINDOW_SECONDS)

    async def brands(self, req: Request) -> Result:
        handle = (req.query.get("handle") or "").strip()[: filters.MAX_TEXT] or None
        try:
            after = (
                filters.as_uuid(req.query["after"], "page cursor")
                if req.query.get("after")
                else None
            )
        except errors.UsageError as exc:
            return Problem(400, exc.message, "brands")
        async with self.reads.read() as conn:
            brands, following = await queries.brands_page(conn, after=after, handle=handle)
        ttl_seconds = self.freshness_ttl.total_seconds()
        for _brand, rows in brands:
            for row in rows:
                enabled, reason = registry.capability_enabled(
                    row["platform"], row["capability"], self.features, self.disabled
                )
                row["capability_on"], row["capability_reason"] = enabled, reason
                age = row["succeeded_age_seconds"]
                row["fresh"] = age is not None and float(age) <= ttl_seconds
        return Page(
            "brands.html",
            {
                "brands": [{"brand_id": b, "sources": rows} for b, rows in brands],
                "next": str(following) if following else None,
                "handle": handle,
                "freshness_ttl_seconds": ttl_seconds,
            },
            tab="brands",
        )

    async def spend_page(self, req: Request) -> Result:
        raw_day = (req.query.get("day") or "").strip()
        try:
            day = dt.date.fromisoformat(raw_day) if raw_day else None
        except ValueError:
            return Problem(400, f"day is not a date (YYYY-MM-DD): {raw_day[:40]!r}", "spend")

        async def compute() -> dict[str, Any]:
            timeout = spend.PAGE_STATEMENT_TIMEOUT_SECONDS
            async with self.reads.read(statement_timeout_seconds=timeout) as conn:
                return await spend.page(conn, self.default_limits, day=day)

        data = await self.spend_cache.get(("spend", day), compute)
        return Page("spend.html", data, tab="spend", html={"chart": spend_chart(data)})

    async def audit(self, req: Request) -> Result:
        try:
            after = filters.cursor(req.query)
        except errors.UsageError as exc:
            return Problem(400, exc.message, "audit")
        async with self.reads.read() as conn:
            rows, following = await queries.audit_page(conn, after=after)
        return Page(
            "audit.html",
            {"entries": rows, "next": following.encode() if following else None},
            tab="audit",
        )

    async def audit_entry(self, req: Request) -> Result:
        try:
            entry_id = filters.as_uuid(req.path_id or "", "audit entry id")
        except errors.UsageError as exc:
            return Problem(400, exc.message, "audit")
        async with self.reads.read() as conn:
            entry = await queries.audit_entry(conn, entry_id)
        if entry is None:
            return Problem(404, "No such audit entry.", "audit")
        return Page("audit_entry.html", {"entry": entry}, tab="audit")


_NOTICES = {"retried": "Job put back in the queue.", "cancelled": "Job cancelled."}


def _selection(
    form: Mapping[str, Any],
    *,
    noun: str,
    params: Callable[[Mapping[str, str]], dict[str, str]],
    applying: bool = False,
) -> actions.Selection:
    """What a bulk action or an abort acts on: ``scope=selected`` with ``id`` values (of
    ``noun``s), or ``scope=matching`` with the filter (its keys chosen by ``params``). An
    apply by filter needs the snapshot its preview took."""
    scope = str(form.get("scope") or "")
    if scope == "selected":
        raw = form.get("id") or []
        return actions.Selection.of_ids([raw] if isinstance(raw, str) else list(raw), noun=noun)
    if scope == "matching":
        source = form.get("filter")
        chosen = params(
            {k: str(v) for k, v in (source if isinstance(source, Mapping) else form).items()}
        )
        snapshot = form.get("snapshot")
        if applying and not snapshot:
            raise errors.UsageError("a filter selection needs the preview's snapshot")
        return actions.Selection(
            params=chosen,
            snapshot=filters.as_time(str(snapshot), "snapshot") if snapshot else None,
        )
    raise errors.UsageError(f"scope must be 'selected' (with {noun} ids) or 'matching'")


def _run_params(query: Mapping[str, str]) -> dict[str, str]:
    """The runs filter's keys, refused at once when a value is bad (the jobs filter is
    checked by its query, which needs a connection)."""
    chosen = filters.run_params(query)
    filters.run_filter(chosen)
    return chosen


def _scope_html(selection: actions.Selection) -> dict[str, Any]:
    """How a confirmation page names what it acts on."""
    return {
        "scope": "selected" if selection.ids is not None else "matching",
        "filter_items": sorted((selection.params or {}).items()),
    }


def _seconds(query: Mapping[str, str], name: str, default: float) -> float:
    raw = (query.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise errors.UsageError(f"{name} is not a number of seconds: {raw[:40]!r}") from None
    if not 0 <= value <= MAX_THRESHOLD_SECONDS:
        raise errors.UsageError(f"{name} must be between 0 and {MAX_THRESHOLD_SECONDS:.0f} s")
    return value


def _outcome_json(outcome: actions.Outcome) -> dict[str, Any]:
    return {
        "action_id": str(outcome.action_id),
        "matched": outcome.matched,
        "changed": outcome.changed,
        "unchanged": outcome.unchanged,
        "problems": outcome.problems,
        "replayed": outcome.replayed,
    }


def throughput_chart(buckets: list[dict[str, Any]], depth_now: int) -> Any:
    """Finished jobs per bucket as stacked bars; enqueued and queue depth as lines.

    Depth at the end of each bucket is walked back from the depth now: one bucket
    earlier it was what it is, minus what was enqueued since, plus what finished since.
    """
    depth = [0.0] * len(buckets)
    level = float(depth_now)
    for i in range(len(buckets) - 1, -1, -1):
        depth[i] = max(level, 0.0)
        level = (
            level
            - float(buckets[i]["created"])
            + sum(float(buckets[i][k]) for k in ("succeeded", "failed", "cancelled"))
        )
    labels = [b["starts_at"].astimezone(dt.UTC).strftime("%H:%M") for b in buckets]
    return charts.bars_and_line(
        "Jobs finished per 15 minutes, jobs enqueued, and queue depth (UTC)",
        labels,
        [
            charts.Series("succeeded", [float(b["succeeded"]) for b in buckets], "#3b8f5a"),
            charts.Series("failed", [float(b["failed"]) for b in buckets], "#c0392b"),
            charts.Series("cancelled", [float(b["cancelled"]) for b in buckets], "#9aa3ad"),
        ],
        [
            charts.Series("enqueued", [float(b["created"]) for b in buckets], "#2f6fb5"),
            charts.Series("queue depth (pending + running)", depth, "#d38b1c"),
        ],
    )


def durations_chart(counts: list[int]) -> Any:
    edges = queries.DURATION_EDGES_SECONDS
    labels = [f"{_ago(edges[i])}-{_ago(edges[i + 1])}" for i in range(len(edges) - 1)]
    labels.append(f">{_ago(edges[-1])}")
    labels[0] = f"<{_ago(edges[1])}"
    return charts.bars_and_line(
        "Run durations, runs finished in the last 24 h",
        labels,
        [charts.Series("runs", [float(c) for c in counts], "#2f6fb5")],
    )


def spend_chart(data: dict[str, Any]) -> Any:
    """Spend per UTC day, stacked by account, with each account's daily cap as a dashed
    line in the account's colour."""
    labels, per_account = spend.chart_series(data)
    names = sorted(set(per_account) | set(data["daily_caps_usd"]))
    colour = {name: ACCOUNT_COLOURS[i % len(ACCOUNT_COLOURS)] for i, name in enumerate(names)}
    bars = [charts.Series(n, per_account[n], colour[n]) for n in names if n in per_account]
    caps = [
        charts.Series(f"{n} daily cap ${cap:,.2f}", [float(cap)] * len(labels), colour[n], True)
        for n in names
        if (cap := data["daily_caps_usd"].get(n)) is not None
    ]
    return charts.bars_and_line(
        f"Apify spend per UTC day, {data['since']} to {data['today']}, with daily caps",
        labels,
        bars,
        caps,
        unit="$",
    )


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0.0, float(seconds))
    if s < 10:
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"
