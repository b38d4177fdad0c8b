"""Bulk retry and cancel: preview with a count and a spend estimate, apply once, audited."""

from __future__ import annotations

import re
import uuid

import pytest
import sqlalchemy as sa
from console_seed import CONSOLE_TOKEN, client, csrf_of
from incident_seed import (
    ACTOR_MEAN_USD,
    INCIDENT_ERROR,
    INCIDENT_KIND,
    SOURCE_MEAN_USD,
    job,
    seed_incident,
    statuses,
)
from sqlalchemy.ext import asyncio as sa_async

from kairo_ingest.console import actions, security

BEARER = {"Authorization": f"Bearer {CONSOLE_TOKEN}", "Accept": "application/json"}
N = 30


async def test_a_bulk_retry_by_filter_shows_count_and_estimate_then_runs_once(
    engine: sa_async.AsyncEngine, db_url: str
) -> None:
    await seed_incident(engine, N)
    ids = [job(i) for i in range(1, N + 1)]
    async with client(db_url, login=False, headers=BEARER) as http:
        body = {"action": "retry", "scope": "matching", "filter": {"q": "crashed incident"}}
        preview = (await http.post("/jobs/bulk", json=body)).json()
        assert preview["matched"] == N
        assert not preview["capped"]
        estimate = preview["estimate"]
        assert estimate["brands"] == N
        assert estimate["source_runs"] == 2 * N
        assert estimate["sources_without_history"] == 0
        assert estimate["usd"] == pytest.approx(N * (SOURCE_MEAN_USD + ACTOR_MEAN_USD))
        assert await statuses(engine, ids) == {"failed": N}  # a preview changes nothing

        apply = body | {
            "action_id": preview["action_id"],
            "snapshot": preview["selection"]["snapshot"],
            "estimate_usd": estimate["usd"],
        }
        outcome = (await http.post("/jobs/bulk/apply", json=apply)).json()
        assert (outcome["matched"], outcome["changed"], outcome["unchanged"]) == (N, N, 0)
        assert await statuses(engine, ids) == {"pending": N}

        # The same action again (a double click, a retried request): nothing more happens.
        again = (await http.post("/jobs/bulk/apply", json=apply)).json()
        assert again["replayed"]
        assert again["changed"] == N
        entry = (await http.get(f"/audit/{preview['action_id']}")).json()["entry"]
    assert entry["state"] == "done"
    assert entry["actor"] == security.identity(CONSOLE_TOKEN)
    assert entry["via"] == "bearer"
    assert entry["client"] == "127.0.0.1"
    assert (entry["matched"], entry["changed"], entry["unchanged"]) == (N, N, 0)
    assert entry["estimate_usd"] == pytest.approx(N * (SOURCE_MEAN_USD + ACTOR_MEAN_USD))
    assert entry["selection"]["filter"] == {"q": "crashed incident"}
    async with engine.connect() as conn:
        others = await conn.scalar(
            sa.text(
                "SELECT count(*) FROM jobs WHERE status = 'failed' AND last_error_kind = 'auth'"
            )
        )
    assert others == 5  # the other failures were not retried


async def test_jobs_created_after_the_preview_are_not_touched(
    engine: sa_async.AsyncEngine, db_url: str
) -> None:
    await seed_incident(engine, 4)
    async with client(db_url, login=False, headers=BEARER) as http:
        body = {"action": "retry", "scope": "matching", "filter": {"error_kind": INCIDENT_KIND}}
        preview = (await http.post("/jobs/bulk", json=body)).json()
        assert preview["matched"] == 4
        await seed_incident(engine, 3, tag="-later")  # the incident goes on
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE jobs SET created_at = now() WHERE id = ANY(:ids)"),
                {"ids": [job(i, "-later") for i in range(1, 4)]},
            )
        outcome = (
            await http.post(
                "/jobs/bulk/apply",
                json=body
                | {
                    "action_id": preview["action_id"],
                    "snapshot": preview["selection"]["snapshot"],
                },
            )
        ).json()
    assert outcome["changed"] == 4
    later = [job(i, "-later") for i in range(1, 4)]
    assert await statuses(engine, later) == {"failed": 3}


async def test_a_bulk_cancel_of_selected_jobs_leaves_the_others(
    engine: sa_async.AsyncEngine, db_url: str
) -> None:
    async with engine.begin() as conn:
        rows = await conn.execute(
            sa.text(
                "INSERT INTO jobs (brand_id, status) SELECT gen_random_uuid(), 'pending' "
                "FROM generate_series(1, 6) RETURNING id"
            )
        )
        pending = list(rows.scalars())
    chosen, kept = pending[:4], pending[4:]
    async with client(db_url) as http:  # a browser: session cookie and CSRF token
        csrf = csrf_of((await http.get("/jobs?status=pending")).text)
        form = {
            "csrf": csrf,
            "action": "cancel",
            "scope": "selected",
            "id": [str(i) for i in chosen],
        }
        page = await http.post("/jobs/bulk", data=form)
        assert page.status_code == 200
        assert re.search(r'id="matched">4<', page.text)
        assert 'id="estimate"' not in page.text  # cancelling starts no run
        action_id = re.search(r'name="action_id" value="([^"]+)"', page.text)
        assert action_id is not None
        done = await http.post("/jobs/bulk/apply", data=form | {"action_id": action_id.group(1)})
        assert done.status_code == 303
        assert done.headers["location"] == f"/audit/{action_id.group(1)}"
        audit = await http.get(done.headers["location"])
        assert 'id="audit-changed">4<' in audit.text
    assert await statuses(engine, chosen) == {"cancelled": 4}
    assert await statuses(engine, kept) == {"pending": 2}


async def test_a_bulk_form_without_its_csrf_token_changes_nothing(
    engine: sa_async.AsyncEngine, db_url: str
) -> None:
    await seed_incident(engine, 3)
    async with client(db_url) as http:
        form = {
            "action": "retry",
            "scope": "selected",
            "id": [str(job(1))],
            "action_id": str(uuid.uuid4()),
        }
        assert (await http.post("/jobs/bulk/apply", data=form)).status_code == 403
        forged = form | {"csrf": "0" * 64}
        assert (await http.post("/jobs/bulk/apply", data=forged)).status_code == 403
    assert await statuses(engine, [job(1)]) == {"failed": 1}


async def test_a_second_retry_of_a_brand_is_refused_and_counted_unchanged(
    engine: sa_async.AsyncEngine, db_url: str
) -> None:
    """One pending compile job per brand: the queue refuses the second, the action goes on."""
    await seed_incident(engine, 2)
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO jobs (id, brand_id, status, last_error, last_error_kind) "
                "SELECT :id, brand_id, 'failed', :err, :kind FROM jobs WHERE id = :first"
            ),
            {"id": uuid.uuid4(), "err": INCIDENT_ERROR, "kind": INCIDENT_KIND, "first": job(1)},
        )
    async with client(db_url, login=False, headers=BEARER) as http:
        body = {"action": "retry", "scope": "matching", "filter": {"error_kind": INCIDENT_KIND}}
        preview = (await http.post("/jobs/bulk", json=body)).json()
        assert preview["matched"] == 3
        assert preview["estimate"]["brands"] == 2  # one run of each source per brand
        outcome = (
            await http.post(
                "/jobs/bulk/apply",
                json=body
                | {"action_id": preview["action_id"], "snapshot": preview["selection"]["snapshot"]},
            )
        ).json()
    assert (outcome["changed"], outcome["unchanged"]) == (2, 1)
    assert "already has a pending" in outcome["problems"][0]


async def test_bad_bulk_requests_are_400s(engine: sa_async.AsyncEngine, db_url: str) -> None:
    async with client(db_url, login=False, headers=BEARER) as http:
        for body in (
            {"action": "delete", "scope": "selected", "id": [str(uuid.uuid4())]},
            {"action": "retry", "scope": "everything"},
            {"action": "retry", "scope": "selected", "id": ["not-a-uuid"]},
            {"action": "retry", "scope": "selected", "id": []},
            {"action": "retry", "scope": "matching", "filter": {"status": "exploded"}},
        ):
            response = await http.post("/jobs/bulk", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"]
        twice = [str(uuid.uuid4())] * 2
        response = await http.post(
            "/jobs/bulk", json={"action": "retry", "scope": "selected", "id": twice}
        )
        assert response.json()["selection"]["ids"] == twice[:1]  # duplicates collapse
        too_many = [str(uuid.uuid4()) for _ in range(actions.MAX_SELECTED + 1)]
        response = await http.post(
            "/jobs/bulk", json={"action": "retry", "scope": "selected", "id": too_many}
        )
        assert response.status_code in (400, 413)
