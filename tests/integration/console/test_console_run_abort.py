"""Aborting runs from the console: select runs (or a filter), see how many, confirm; the
runs are marked for the run ledger to abort, once, audited; nothing without CSRF."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from console_seed import CONSOLE_TOKEN, Seeded, client, csrf_of
from ledger_seed import (
    ABORTED,
    FOLLOWED,
    JOBLESS,
    OF_CANCELLED_JOB,
    OF_DONE_JOB,
    RELEASED,
    seed_ledger,
)

from kairo_ingest.db import engine as db_engine

BEARER = {"Authorization": f"Bearer {CONSOLE_TOKEN}", "Accept": "application/json"}
NOT_ENDED = {FOLLOWED, RELEASED, OF_DONE_JOB, OF_CANCELLED_JOB, JOBLESS}  # the demo's ended


async def _asked(url: str) -> set[uuid.UUID]:
    engine = db_engine.create(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT id FROM apify_runs WHERE operator_abort_requested_at IS NOT NULL")
            )
            return {r.id for r in rows}
    finally:
        await engine.dispose()


async def test_selected_runs_are_marked_once_after_a_confirmation_and_audited(
    seeded: Seeded,
) -> None:
    await seed_ledger(seeded.url)
    chosen = [str(RELEASED), str(FOLLOWED), str(ABORTED)]  # the last has ended
    async with client(seeded.url) as http:
        runs = await http.get("/runs")
        assert 'id="abort-selected"' in runs.text
        csrf = csrf_of(runs.text)
        form = {"csrf": csrf, "scope": "selected", "id": chosen}
        confirm = await http.post("/runs/abort", data=form)
        assert confirm.status_code == 200
        assert "Abort 2 Apify runs?" in confirm.text  # the ended run does not count
        assert await _asked(seeded.url) == set()  # a preview changes nothing
        action_id = confirm.text.split('name="action_id" value="')[1].split('"')[0]
        applied = await http.post("/runs/abort/apply", data=form | {"action_id": action_id})
        assert applied.status_code == 303
        assert applied.headers["location"] == f"/audit/{action_id}"
        assert await _asked(seeded.url) == {RELEASED, FOLLOWED}
        again = await http.post("/runs/abort/apply", data=form | {"action_id": action_id})
        assert again.status_code == 303
        entry = (
            await http.get(f"/audit/{action_id}", headers={"Accept": "application/json"})
        ).json()
    entry = entry["entry"]
    assert (entry["action"], entry["target"], entry["state"]) == ("abort", "runs", "done")
    assert (entry["matched"], entry["changed"], entry["unchanged"]) == (3, 2, 1)
    assert entry["selection"] == {"ids": chosen}


async def test_an_abort_form_without_its_csrf_token_changes_nothing(seeded: Seeded) -> None:
    await seed_ledger(seeded.url)
    async with client(seeded.url) as http:
        form = {"scope": "selected", "id": [str(RELEASED)], "action_id": str(uuid.uuid4())}
        response = await http.post("/runs/abort/apply", data=form)
        forged = await http.post("/runs/abort/apply", data=form | {"csrf": "x" * 40})
    assert response.status_code == 403
    assert forged.status_code == 403
    assert await _asked(seeded.url) == set()


async def test_every_run_matching_a_filter_is_marked_and_a_second_preview_finds_none(
    seeded: Seeded,
) -> None:
    await seed_ledger(seeded.url)
    async with client(seeded.url, login=False, headers=BEARER) as http:
        body = {"scope": "matching", "filter": {"account": "default"}}
        preview = (await http.post("/runs/abort", json=body)).json()
        assert preview["matched"] == len(NOT_ENDED)
        apply = body | {
            "action_id": preview["action_id"],
            "snapshot": preview["selection"]["snapshot"],
        }
        outcome = (await http.post("/runs/abort/apply", json=apply)).json()
        assert outcome["changed"] == preview["matched"]
        after = (await http.post("/runs/abort", json=body)).json()
        bad = await http.post(
            "/runs/abort", json={"scope": "matching", "filter": {"platform": "x"}}
        )
    assert after["matched"] == 0
    assert await _asked(seeded.url) == NOT_ENDED
    assert bad.status_code == 400
