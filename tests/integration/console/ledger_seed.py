"""Runs for the run ledger page: followed, released, of a finished, cancelled or gone
job, and two that ended today partial (aborted 0.50 USD, at the charge cap 1.25 USD)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from kairo_ingest.db import engine as db_engine

RUNNING_JOB = uuid.UUID("00000000-0000-4000-8000-0000000b0001")
DONE_JOB = uuid.UUID("00000000-0000-4000-8000-0000000b0002")
CANCELLED_JOB = uuid.UUID("00000000-0000-4000-8000-0000000b0003")
FOLLOWED = uuid.UUID("00000000-0000-4000-8000-0000000b0011")  # its running job follows it
RELEASED = uuid.UUID("00000000-0000-4000-8000-0000000b0012")  # its running job let it go
OF_DONE_JOB = uuid.UUID("00000000-0000-4000-8000-0000000b0013")
OF_CANCELLED_JOB = uuid.UUID("00000000-0000-4000-8000-0000000b0014")
JOBLESS = uuid.UUID("00000000-0000-4000-8000-0000000b0015")
ABORTED = uuid.UUID("00000000-0000-4000-8000-0000000b0021")  # ended today, aborted: 0.50
CAPPED = uuid.UUID("00000000-0000-4000-8000-0000000b0022")  # ended today, charge cap: 1.25


async def seed_ledger(url: str) -> None:
    engine = db_engine.create(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    """
                    INSERT INTO jobs (id, status, lease_owner, lease_token, lease_expires_at,
                                      claims, attempts, attempt_started_at, started_at,
                                      finished_at, cancel_requested_at)
                    VALUES (:running, 'running', 'w1', gen_random_uuid(),
                            now() + interval '1 min', 1, 1, now(), now(), NULL, NULL),
                           (:done, 'succeeded', NULL, NULL, NULL, 1, 1, NULL, now(), now(), NULL),
                           (:cancelled, 'running', 'w1', gen_random_uuid(),
                            now() + interval '1 min', 1, 1, now(), now(), NULL, now())
                    """
                ),
                {"running": RUNNING_JOB, "done": DONE_JOB, "cancelled": CANCELLED_JOB},
            )
            await conn.execute(
                sa.text(
                    """
                    INSERT INTO apify_runs (id, job_id, source_connection_id, brand_id, actor_id,
                                            input, apify_run_id, status, account, intent_at,
                                            sent_at, started_at, released_at, finished_at,
                                            partial_reason, ended_by, usage_total_usd)
                    SELECT v.id, v.job_id, s.id, s.brand_id, 'apify/instagram-scraper', '{}',
                           'ledger-' || v.n, v.status, 'default',
                           now() - make_interval(mins => v.n),
                           now() - make_interval(mins => v.n), now() - make_interval(mins => v.n),
                           v.released_at, v.finished_at, v.partial_reason, v.ended_by, v.usd
                    FROM (SELECT id, brand_id FROM source_connections
                          WHERE enabled AND coalesce(account, 'default') = 'default'
                          ORDER BY id LIMIT 1) AS s,
                         (VALUES
                            (CAST(:followed AS uuid), CAST(:running AS uuid), 1, 'RUNNING',
                             CAST(NULL AS timestamptz), CAST(NULL AS timestamptz),
                             CAST(NULL AS text), CAST(NULL AS text), CAST(NULL AS numeric)),
                            (:released, :running, 2, 'RUNNING', now(), NULL, NULL, NULL, NULL),
                            (:of_done, :done, 3, 'RUNNING', NULL, NULL, NULL, NULL, NULL),
                            (:of_cancelled, :cancelled, 4, 'RUNNING', NULL, NULL, NULL, NULL,
                             NULL),
                            (:jobless, NULL, 5, 'READY', NULL, NULL, NULL, NULL, NULL),
                            (:aborted, :done, 6, 'ABORTED', NULL, now(), 'aborted', 'ledger',
                             0.5),
                            (:capped, :done, 7, 'SUCCEEDED', NULL, now(), 'charge_cap', 'job',
                             1.25))
                         AS v (id, job_id, n, status, released_at, finished_at, partial_reason,
                               ended_by, usd)
                    """
                ),
                {
                    "running": RUNNING_JOB,
                    "done": DONE_JOB,
                    "cancelled": CANCELLED_JOB,
                    "followed": FOLLOWED,
                    "released": RELEASED,
                    "of_done": OF_DONE_JOB,
                    "of_cancelled": OF_CANCELLED_JOB,
                    "jobless": JOBLESS,
                    "aborted": ABORTED,
                    "capped": CAPPED,
                },
            )
    finally:
        await engine.dispose()
