"""After an Apify incident: many failed jobs, one per brand, with sources and costed runs.

Brand ``i`` has two enabled sources: an Instagram one whose last runs cost 0.10, 0.20 and
0.30 USD (mean 0.20), and a TikTok one that never ran. The TikTok actor's other runs
(on a brand with no failed job) cost 0.05 USD each, so a retry of ``n`` of these jobs is
estimated at ``n * (0.20 + 0.05)``. Every job failed with "Apify run FAILED: actor
crashed (incident 42)", error kind ``apify_run_failed``; a few more failed jobs elsewhere
have other errors, and some succeeded or are pending.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.db import engine as db_engine
from kairo_ingest.domain import registry

INCIDENT_ERROR = "Apify run FAILED: actor crashed (incident 42)"
INCIDENT_KIND = "apify_run_failed"
SOURCE_MEAN_USD = 0.20
ACTOR_MEAN_USD = 0.05
INSTAGRAM_ACTOR = registry.get_spec("instagram", "posts").actor_id
TIKTOK_ACTOR = registry.get_spec("tiktok", "profile_videos").actor_id

SEED = [
    # Brands 1..n: two sources each, handles @incident<i>.
    """
    INSERT INTO source_connections (id, brand_id, platform, capability, identifier)
    SELECT md5('ig' || g || :tag)::uuid, md5('brand' || g || :tag)::uuid, 'instagram', 'posts',
           '@incident' || g
    FROM generate_series(1, :n) AS g
    UNION ALL
    SELECT md5('tt' || g || :tag)::uuid, md5('brand' || g || :tag)::uuid, 'tiktok',
           'profile_videos', '@incident' || g
    FROM generate_series(1, :n) AS g
    """,
    # The failed jobs, created a minute apart, oldest first.
    """
    INSERT INTO jobs (id, brand_id, status, attempts, last_error, last_error_kind, created_at,
                      started_at, finished_at)
    SELECT md5('job' || g || :tag)::uuid, md5('brand' || g || :tag)::uuid, 'failed', 3,
           :error, :kind, now() - make_interval(mins => :n + 10 - g), now() - interval '5 min',
           now() - interval '4 min'
    FROM generate_series(1, :n) AS g
    """,
    # Three costed runs per Instagram source: 0.10, 0.20, 0.30 (mean 0.20).
    """
    INSERT INTO apify_runs (source_connection_id, brand_id, actor_id, input, apify_run_id,
                            status, created_at, started_at, finished_at, usage_total_usd,
                            account)
    SELECT md5('ig' || g || :tag)::uuid, md5('brand' || g || :tag)::uuid, :ig_actor, '{}',
           'run-ig-' || g || '-' || k || :tag, 'SUCCEEDED',
           now() - make_interval(days => 5 - k), now() - make_interval(days => 5 - k),
           now() - make_interval(days => 5 - k), 0.10 * k, 'default'
    FROM generate_series(1, :n) AS g, generate_series(1, 3) AS k
    """,
    # The TikTok actor's runs elsewhere: a brand with no failed job, 0.05 each.
    """
    INSERT INTO source_connections (id, brand_id, platform, capability, identifier)
    VALUES (md5('tt-other' || :tag)::uuid, md5('brand-other' || :tag)::uuid, 'tiktok',
            'profile_videos', '@elsewhere')
    """,
    """
    INSERT INTO apify_runs (source_connection_id, brand_id, actor_id, input, apify_run_id,
                            status, created_at, started_at, finished_at, usage_total_usd,
                            account)
    SELECT md5('tt-other' || :tag)::uuid, md5('brand-other' || :tag)::uuid, :tt_actor, '{}',
           'run-tt-' || k || :tag, 'SUCCEEDED', now() - make_interval(hours => k),
           now() - make_interval(hours => k), now() - make_interval(hours => k), 0.05, 'default'
    FROM generate_series(1, 4) AS k
    """,
    # Other failures, successes and a pending job, which the incident filter must not touch.
    """
    INSERT INTO jobs (brand_id, status, attempts, last_error, last_error_kind, created_at,
                      finished_at)
    SELECT gen_random_uuid(), 'failed', 3, 'Apify token refused (401)', 'auth',
           now() - interval '2 hours', now() - interval '1 hour'
    FROM generate_series(1, 5)
    UNION ALL
    SELECT gen_random_uuid(), 'succeeded', 1, NULL, NULL, now() - interval '3 hours', now()
    FROM generate_series(1, 5)
    """,
]


def brand(i: int, tag: str = "") -> uuid.UUID:
    import hashlib

    return uuid.UUID(hashlib.md5(f"brand{i}{tag}".encode()).hexdigest())


def job(i: int, tag: str = "") -> uuid.UUID:
    import hashlib

    return uuid.UUID(hashlib.md5(f"job{i}{tag}".encode()).hexdigest())


async def seed_incident(engine: sa_async.AsyncEngine, n: int, *, tag: str = "") -> None:
    params = {
        "n": n,
        "tag": tag,
        "error": INCIDENT_ERROR,
        "kind": INCIDENT_KIND,
        "ig_actor": INSTAGRAM_ACTOR,
        "tt_actor": TIKTOK_ACTOR,
    }
    async with engine.begin() as conn:
        for statement in SEED:
            text = sa.text(statement)
            used = {k: v for k, v in params.items() if f":{k}" in statement}
            await conn.execute(text, used)


async def seed_incident_at(url: str, n: int, *, tag: str = "") -> None:
    engine = db_engine.create(url, pool_size=1)
    try:
        await seed_incident(engine, n, tag=tag)
    finally:
        await engine.dispose()


async def statuses(engine: sa_async.AsyncEngine, ids: list[uuid.UUID]) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT status, count(*) FROM jobs WHERE id = ANY(:ids) GROUP BY status"),
            {"ids": ids},
        )
        return {str(s): int(n) for s, n in rows}
