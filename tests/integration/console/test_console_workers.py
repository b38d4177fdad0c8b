"""The replicas and stuck work page (``/workers``): every worker with the jobs it holds,
and the work that is stuck: leases about to end, Apify runs going on too long, jobs on
their last attempt. HTML and JSON, behind the same credential."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from console_seed import CONSOLE_TOKEN, Seeded, client

from kairo_ingest.db import engine as db_engine

LIVE = "worker-live-1"
STOPPED = "worker-stopped-2"
FORGOTTEN = "worker-forgotten-3"
LIVE_JOB = uuid.UUID("00000000-0000-4000-8000-0000000a0001")  # lease ends in 10 s
STOPPED_JOB = uuid.UUID("00000000-0000-4000-8000-0000000a0002")  # lease ends in 10 min
FORGOTTEN_JOB = uuid.UUID("00000000-0000-4000-8000-0000000a0003")  # lease ended 5 s ago
LAST_JOB = uuid.UUID("00000000-0000-4000-8000-0000000a0004")  # pending, 9 of 10 attempts
SPARE_JOB = uuid.UUID("00000000-0000-4000-8000-0000000a0005")  # pending, 2 of 10 attempts
LONG_RUN = uuid.UUID("00000000-0000-4000-8000-0000000a0011")  # RUNNING for 2 h
SHORT_RUN = uuid.UUID("00000000-0000-4000-8000-0000000a0012")  # RUNNING for 5 min
JSON = {"Accept": "application/json"}


async def _seed(url: str) -> None:
    engine = db_engine.create(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    """
                    INSERT INTO workers (owner, hostname, pid, version, concurrency,
                                         heartbeat_interval_seconds, started_at, last_beat_at,
                                         stopped_at)
                    VALUES ('worker-live-1', 'host-a', 101, '1.2.3', 4, 10,
                            now() - interval '1 h', now(), NULL),
                           ('worker-stopped-2', 'host-b', 202, '1.2.2', 2, 10,
                            now() - interval '2 h', now() - interval '1 min', now())
                    """
                )
            )
            for job_id, owner, lease in (
                (LIVE_JOB, LIVE, 10.0),
                (STOPPED_JOB, STOPPED, 600.0),
                (FORGOTTEN_JOB, FORGOTTEN, -5.0),
            ):
                await conn.execute(
                    sa.text(
                        """
                        INSERT INTO jobs (id, status, lease_owner, lease_token, lease_expires_at,
                                          claims, attempts, max_attempts, attempt_started_at,
                                          started_at)
                        VALUES (:id, 'running', :owner, gen_random_uuid(),
                                now() + make_interval(secs => :lease), 1, 1, 10, now(), now())
                        """
                    ),
                    {"id": job_id, "owner": owner, "lease": lease},
                )
            await conn.execute(
                sa.text(
                    """
                    INSERT INTO jobs (id, status, attempts, max_attempts, last_error,
                                      last_error_kind)
                    VALUES (:last, 'pending', 9, 10, 'Apify run FAILED', 'apify_run_failed'),
                           (:spare, 'pending', 2, 10, NULL, NULL)
                    """
                ),
                {"last": LAST_JOB, "spare": SPARE_JOB},
            )
            await conn.execute(
                sa.text(
                    """
                    INSERT INTO apify_runs (id, job_id, source_connection_id, brand_id, actor_id,
                                            input, apify_run_id, status, intent_at, sent_at,
                                            started_at)
                    SELECT v.id, :job, s.id, s.brand_id, 'apify/instagram-scraper', '{}',
                           v.apify_run_id, 'RUNNING', now() - v.age, now() - v.age,
                           now() - v.age
                    FROM (SELECT id, brand_id FROM source_connections ORDER BY id LIMIT 1) AS s,
                         (VALUES (CAST(:long AS uuid), 'long-run-1', interval '2 hours'),
                                 (CAST(:short AS uuid), 'short-run-2', interval '5 minutes'))
                             AS v (id, apify_run_id, age)
                    """
                ),
                {"job": STOPPED_JOB, "long": LONG_RUN, "short": SHORT_RUN},
            )
    finally:
        await engine.dispose()


async def test_workers_page_lists_every_worker_with_its_jobs_and_the_stuck_work(
    seeded: Seeded,
) -> None:
    await _seed(seeded.url)
    async with client(seeded.url) as http:
        page = await http.get("/workers")
        data = (await http.get("/workers", headers=JSON)).json()
    assert page.status_code == 200
    body = page.text
    live = body[
        body.index('id="live-workers"') : body.index("</table>", body.index('id="live-workers"'))
    ]
    stopped = body[body.index('id="stopped-workers"') :]
    assert LIVE in live
    assert str(LIVE_JOB) in live
    assert "host-a" in live
    assert STOPPED not in live
    assert STOPPED in stopped
    assert str(STOPPED_JOB) in stopped
    assert 'id="unregistered"' in body  # the section of jobs held by unknown owners
    assert str(FORGOTTEN_JOB) in body[body.index('id="unregistered"') :]

    workers = {w["owner"]: w for w in data["workers"]}
    assert workers[LIVE]["alive"] is True
    assert workers[STOPPED]["alive"] is False
    assert [j["id"] for j in workers[LIVE]["jobs"]] == [str(LIVE_JOB)]
    assert [j["id"] for j in workers[STOPPED]["jobs"]] == [str(STOPPED_JOB)]
    assert [u["owner"] for u in data["unregistered"]] == [FORGOTTEN]
    assert [j["id"] for j in data["unregistered"][0]["jobs"]] == [str(FORGOTTEN_JOB)]

    stuck = data["stuck"]
    near = [j["id"] for j in stuck["leases_near_expiry"]]
    assert near == [str(FORGOTTEN_JOB), str(LIVE_JOB)]  # soonest (already ended) first
    assert [r["id"] for r in stuck["long_runs"]] == [str(LONG_RUN)]
    assert [j["id"] for j in stuck["last_attempt"]] == [str(LAST_JOB)]
    assert data["thresholds"] == {"lease_within_seconds": 30.0, "runs_over_seconds": 3600.0}


async def test_workers_page_thresholds_come_from_the_request(seeded: Seeded) -> None:
    await _seed(seeded.url)
    async with client(seeded.url) as http:
        wide = (await http.get("/workers?lease_within=900&runs_over=60", headers=JSON)).json()
        bad = await http.get("/workers?runs_over=forever")
        negative = await http.get("/workers?lease_within=-1", headers=JSON)
    near = {j["id"] for j in wide["stuck"]["leases_near_expiry"]}
    assert near == {str(FORGOTTEN_JOB), str(LIVE_JOB), str(STOPPED_JOB)}
    assert {r["id"] for r in wide["stuck"]["long_runs"]} == {str(LONG_RUN), str(SHORT_RUN)}
    assert bad.status_code == 400
    assert "runs_over" in bad.text
    assert negative.status_code == 400


async def test_workers_page_needs_the_credential(seeded: Seeded) -> None:
    async with client(seeded.url, login=False) as anon:
        html = await anon.get("/workers")
        as_json = await anon.get("/workers", headers=JSON)
        bearer = await anon.get(
            "/workers", headers=JSON | {"Authorization": f"Bearer {CONSOLE_TOKEN}"}
        )
    assert html.status_code == 401
    assert 'name="next" value="/workers"' in html.text
    assert as_json.status_code == 401
    assert bearer.status_code == 200
    assert "workers" in bearer.json()
