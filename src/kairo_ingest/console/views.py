"""The console's pages: read the database (console.queries, the queue API), render a template.

Templates are Jinja2 with autoescaping on for every file (not only ``.html``), and
undefined names fail loudly. Charts arrive as escaped SVG markup from console.charts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import urllib.parse
import uuid
from collections.abc import Collection, Mapping
from typing import Any

import jinja2
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest import __version__, errors, logs
from kairo_ingest.console import charts, queries, responses, spend
from kairo_ingest.domain import registry, statuses
from kairo_ingest.queue import jobs as queue_jobs

log = logs.get(__name__)

TEMPLATES = pathlib.Path(__file__).parent / "templates"
OVERVIEW_REFRESH_SECONDS = 5
WINDOW_SECONDS = 24 * 3600
THROUGHPUT_BUCKETS = 24
THROUGHPUT_BUCKET_SECONDS = 15 * 60
APIFY_RUN_URL = "https://console.apify.com/view/runs/{}"
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

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
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


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _apify_url(apify_run_id: str | None) -> str | None:
    if not apify_run_id:
        return None
    return APIFY_RUN_URL.format(urllib.parse.quote(apify_run_id, safe=""))


def _qs(**params: Any) -> str:
    kept = {k: str(v) for k, v in params.items() if v not in (None, "")}
    return "?" + urllib.parse.urlencode(kept) if kept else ""


_env.filters.update(ago=_ago, when=_when, apify_url=_apify_url)
_env.globals.update(qs=_qs, version=__version__)


def stylesheet() -> bytes:
    return (TEMPLATES / "console.css").read_bytes()


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    csrf: str
    login_required: bool


class Pages:
    def __init__(
        self,
        engine: sa_async.AsyncEngine,
        *,
        freshness_ttl: dt.timedelta,
        disabled_capabilities: Collection[str],
        features: Collection[str] = frozenset(),
        default_limits: spend.DefaultLimits | None = None,
    ) -> None:
        self.engine = engine
        self.default_limits = default_limits or spend.DefaultLimits(32, 32_768, None)
        self.freshness_ttl = freshness_ttl
        self.disabled = disabled_capabilities
        self.features = features

    def _render(
        self, ctx: Context, name: str, code: int = 200, **values: Any
    ) -> responses.Response:
        body = _env.get_template(name).render(ctx=ctx, **values).encode()
        return responses.Response(code, body)

    def login(self, ctx: Context, *, status: int, failed: bool = False) -> responses.Response:
        return self._render(ctx, "login.html", status, failed=failed, page="login")

    def not_found(self, ctx: Context) -> responses.Response:
        return self._render(ctx, "error.html", 404, message="No such page.", page="")

    def _bad(self, ctx: Context, message: str) -> responses.Response:
        return self._render(ctx, "error.html", 400, message=message, page="")

    async def overview(self, ctx: Context) -> responses.Response:
        depth = await queue_jobs.depth(self.engine)
        summary = await queries.overview(self.engine, window_seconds=WINDOW_SECONDS)
        buckets = await queries.throughput(
            self.engine, buckets=THROUGHPUT_BUCKETS, bucket_seconds=THROUGHPUT_BUCKET_SECONDS
        )
        return self._render(
            ctx,
            "overview.html",
            page="overview",
            refresh_seconds=OVERVIEW_REFRESH_SECONDS,
            depth=depth,
            summary=summary,
            chart=throughput_chart(buckets, depth["pending"] + depth["running"]),
            spend=await spend.panel(self.engine, self.default_limits),
        )

    async def jobs(self, ctx: Context, query: Mapping[str, str]) -> responses.Response:
        status = query.get("status") or None
        kind = query.get("kind") or None
        brand_raw = (query.get("brand") or "").strip()
        try:
            if status is not None and status not in {s.value for s in statuses.JobStatus}:
                raise errors.UsageError(f"unknown status {status!r}")
            if kind is not None and kind not in {k.value for k in statuses.JobKind}:
                raise errors.UsageError(f"unknown kind {kind!r}")
            brand = _uuid(brand_raw, "brand") if brand_raw else None
            after = queries.Cursor.decode(query["after"]) if query.get("after") else None
        except errors.UsageError as exc:
            return self._bad(ctx, exc.message)
        rows, following = await queries.jobs_page(
            self.engine, status=status, brand_id=brand, kind=kind, after=after
        )
        return self._render(
            ctx,
            "jobs.html",
            page="jobs",
            rows=rows,
            following=following.encode() if following else None,
            filters={"status": status, "kind": kind, "brand": brand_raw},
            job_statuses=[s.value for s in statuses.JobStatus],
            job_kinds=[k.value for k in statuses.JobKind],
        )

    async def job(self, ctx: Context, raw_id: str, done: str | None) -> responses.Response:
        try:
            job_id = _uuid(raw_id, "job id")
        except errors.UsageError as exc:
            return self._bad(ctx, exc.message)
        return await self._job_page(ctx, job_id, notice=_NOTICES.get(done or ""))

    async def _job_page(
        self,
        ctx: Context,
        job_id: uuid.UUID,
        *,
        notice: str | None = None,
        problem: str | None = None,
        status: int = 200,
    ) -> responses.Response:
        job = await queue_jobs.get(self.engine, job_id)
        if job is None:
            return self._render(ctx, "error.html", 404, message="No such job.", page="jobs")
        runs = await queries.job_runs(self.engine, job_id)
        evidence = await self._evidence_rows(job.evidence_status)
        return self._render(
            ctx,
            "job.html",
            status,
            page="jobs",
            job=job,
            runs=runs,
            evidence=evidence,
            notice=notice,
            problem=problem,
            can_retry=job.status in ("failed", "cancelled"),
            can_cancel=job.status in ("pending", "running"),
        )

    async def _evidence_rows(self, status: Mapping[str, Any] | None) -> list[dict[str, Any]]:
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
        sources = await queries.sources_by_id(self.engine, ids)
        rows = []
        for bucket, entry in entries:
            try:
                source = sources.get(uuid.UUID(str(entry.get("source_id"))))
            except ValueError:
                source = None
            shown = dict.fromkeys(EVIDENCE_FIELDS) | entry  # absent fields show as "-"
            rows.append({"outcome": bucket, "entry": shown, "source": source})
        return rows

    async def act(self, ctx: Context, raw_id: str, action: str) -> responses.Response:
        """Retry or cancel through the queue's own functions (as ``jobs retry|cancel``)."""
        try:
            job_id = _uuid(raw_id, "job id")
            operation = queue_jobs.retry if action == "retry" else queue_jobs.cancel
            job = await operation(self.engine, job_id)
        except errors.UsageError as exc:
            return await self._job_page(ctx, uuid.UUID(raw_id), problem=exc.message, status=409)
        if job is None:
            return self._render(ctx, "error.html", 404, message="No such job.", page="jobs")
        log.info("console_job_action", action=action, job_id=str(job_id))
        return responses.redirect(
            f"/jobs/{job_id}?done={'retried' if action == 'retry' else 'cancelled'}"
        )

    async def runs(self, ctx: Context, query: Mapping[str, str]) -> responses.Response:
        status = (query.get("status") or "").strip().upper() or None
        try:
            after = queries.Cursor.decode(query["after"]) if query.get("after") else None
        except errors.UsageError as exc:
            return self._bad(ctx, exc.message)
        rows, following = await queries.runs_page(self.engine, status=status, after=after)
        durations = await queries.run_durations(self.engine, window_seconds=WINDOW_SECONDS)
        return self._render(
            ctx,
            "runs.html",
            page="runs",
            runs=rows,
            following=following.encode() if following else None,
            status=status,
            run_statuses=[s.value for s in statuses.RunStatus],
            chart=durations_chart(durations),
        )

    async def brands(self, ctx: Context, query: Mapping[str, str]) -> responses.Response:
        try:
            after = _uuid(query["after"], "page cursor") if query.get("after") else None
        except errors.UsageError as exc:
            return self._bad(ctx, exc.message)
        brands, following = await queries.brands_page(self.engine, after=after)
        ttl_seconds = self.freshness_ttl.total_seconds()
        for _brand, rows in brands:
            for row in rows:
                enabled, reason = registry.capability_enabled(
                    row["platform"], row["capability"], self.features, self.disabled
                )
                row["capability_on"], row["capability_reason"] = enabled, reason
                age = row["succeeded_age_seconds"]
                row["fresh"] = age is not None and float(age) <= ttl_seconds
        return self._render(
            ctx,
            "brands.html",
            page="brands",
            brands=brands,
            following=str(following) if following else None,
            ttl_seconds=ttl_seconds,
        )


_NOTICES = {"retried": "Job put back in the queue.", "cancelled": "Job cancelled."}


def _uuid(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise errors.UsageError(f"{what} is not a UUID: {raw!r}") from None


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
