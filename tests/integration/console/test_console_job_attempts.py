"""The job page lists every attempt: its number, the replica that ran it, when it started
and ended, how it ended, the error, the Apify runs it started and what they cost."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from console_seed import Seeded, client

from kairo_ingest.db import engine as db_engine

JOB = uuid.UUID("00000000-0000-4000-8000-0000000c0001")
JSON = {"Accept": "application/json"}


async def _seed(url: str) -> None:
    engine = db_engine.create(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    """
                    INSERT INTO jobs (id, status, attempts, claims, interruptions, max_attempts,
                                      last_error, last_error_kind)
                    VALUES (:id, 'pending', 1, 2, 1, 10, 'Apify run FAILED: actor crashed',
                            'apify_run_failed')
                    """
                ),
                {"id": JOB},
            )
            await conn.execute(
                sa.text(
                    """
                    INSERT INTO job_attempts (job_id, number, owner, started_at, ended_at,
                                              outcome, job_status, error_kind, error)
                    VALUES (:id, 1, 'replica-a:101', now() - interval '20 min',
                            now() - interval '15 min', 'failed', 'pending', 'apify_run_failed',
                            'Apify run FAILED: actor crashed'),
                           (:id, 2, 'replica-b:202', now() - interval '10 min',
                            now() - interval '5 min', 'reaped', 'pending', NULL, NULL)
                    """
                ),
                {"id": JOB},
            )
            await conn.execute(
                sa.text(
                    """
                    INSERT INTO apify_runs (job_id, job_attempt, source_connection_id, brand_id,
                                            actor_id, input, apify_run_id, status,
                                            usage_total_usd, started_at, finished_at)
                    SELECT :id, v.attempt, s.id, s.brand_id, 'apify/instagram-scraper', '{}',
                           v.apify_run_id, v.status, v.usd, now() - interval '20 min', now()
                    FROM (SELECT id, brand_id FROM source_connections ORDER BY id LIMIT 1) AS s,
                         (VALUES (1, 'attempt-1-run-a', 'FAILED', 0.10),
                                 (1, 'attempt-1-run-b', 'SUCCEEDED', 0.20),
                                 (2, 'attempt-2-run-a', 'ABORTED', 0.05))
                             AS v (attempt, apify_run_id, status, usd)
                    """
                ),
                {"id": JOB},
            )
    finally:
        await engine.dispose()


async def test_job_page_lists_every_attempt_with_its_runs_and_cost(seeded: Seeded) -> None:
    await _seed(seeded.url)
    async with client(seeded.url) as http:
        page = await http.get(f"/jobs/{JOB}")
        data = (await http.get(f"/jobs/{JOB}", headers=JSON)).json()
    attempts = data["attempts"]
    assert [(a["number"], a["owner"], a["outcome"]) for a in attempts] == [
        (1, "replica-a:101", "failed"),
        (2, "replica-b:202", "reaped"),
    ]
    assert attempts[0]["error_kind"] == "apify_run_failed"
    assert sorted(r["apify_run_id"] for r in attempts[0]["runs"]) == [
        "attempt-1-run-a",
        "attempt-1-run-b",
    ]
    assert attempts[0]["cost_usd"] == 0.3
    assert [r["apify_run_id"] for r in attempts[1]["runs"]] == ["attempt-2-run-a"]
    assert attempts[1]["cost_usd"] == 0.05
    table = page.text[page.text.index('id="attempts"') :]
    table = table[: table.index("</table>")]
    for text in ("replica-a:101", "replica-b:202", "reaped", "attempt-2-run-a", "$0.3000"):
        assert text in table


async def test_a_demo_job_shows_the_attempt_that_ran_it(seeded: Seeded) -> None:
    async with client(seeded.url) as http:
        data = (await http.get(f"/jobs/{seeded.demo_jobs[0]}", headers=JSON)).json()
    assert [a["outcome"] for a in data["attempts"]] == ["succeeded"]
    assert len(data["attempts"][0]["runs"]) == len(data["runs"])
